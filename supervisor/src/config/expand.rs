//! `${VAR}` and `${VAR:-default}` in configuration strings, and `.env` files.

use std::path::Path;

/// Where the `}` that closes a `${` is in `body` (the text after the `${`), nested `${...}`
/// in a default skipped.
fn closing_brace(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut prev = '\0';
    for (i, c) in body.char_indices() {
        match c {
            '{' if prev == '$' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        prev = c;
    }
    None
}

/// Expands `${NAME}` and `${NAME:-default}` using `lookup`; `$$` is a literal `$`, and a `$`
/// not followed by `{` stays as it is. A default may itself hold references
/// (`${URL:-${DATA:-/app/data}/repo}`). An unset variable without a default is an error, so a
/// typo is caught at start rather than turning into an empty argument.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    expand_nested(text, lookup, 0)
}

/// How deep defaults may nest: `${A:-${B:-${C}}}` is 3. Deeper is refused, so that a hostile
/// or broken file cannot make the reader recurse (and rescan) without end.
const MAX_NESTING: usize = 8;

fn expand_nested(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    if depth >= MAX_NESTING {
        return Err(format!(
            "defaults nested more than {MAX_NESTING} deep (\"${{A:-${{B:-...}}}}\")"
        ));
    }
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing_brace(body).ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("\"${{{inner}}}\" is not a variable reference"));
            }
            match (
                lookup(name).filter(|v| default.is_none() || !v.is_empty()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                // A default may refer to other variables: `${URL:-${DATA:-/app/data}/repo}`.
                (None, Some(d)) => out.push_str(&expand_nested(d, lookup, depth + 1)?),
                (None, None) => {
                    return Err(format!(
                        "${{{name}}} is not set (set it in the environment or an env_file, or write ${{{name}:-default}})"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of `name` in `vars` (an env file's lines in order): the last one wins, as when
/// the file is sourced by a shell.
pub fn last_value(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// Reads a `.env` file: `KEY=VALUE` lines, `#` comments, optional quotes and `export`.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| describe(path, e))?;
    iter.map(|item| item.map_err(|e| describe(path, e)))
        .collect()
}

/// What went wrong, naming the file, the line and the key, never a value: the file holds
/// secrets, and dotenvy's parse error carries the rest of the file from the bad line on.
fn describe(path: &Path, e: dotenvy::Error) -> String {
    match e {
        dotenvy::Error::Io(io) => format!("cannot read env_file {}: {io}", path.display()),
        dotenvy::Error::LineParse(rest, _) => {
            let first = rest.lines().next().unwrap_or_default();
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let line = text
                .find(rest.as_str())
                .map_or(0, |at| text[..at].matches('\n').count() + 1);
            let key: String = first
                .trim_start()
                .trim_start_matches("export ")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let key = if key.is_empty() {
                "(no key)".to_owned()
            } else {
                key
            };
            format!(
                "env_file {}:{line}: cannot parse the line of {key} (its value is not shown)",
                path.display()
            )
        }
        other => format!("env_file {}: {other}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/bot".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(expand("${HOME}/x", &env).as_deref(), Ok("/home/bot/x"));
        assert_eq!(expand("${NOPE:-7}", &env).as_deref(), Ok("7"));
        assert_eq!(expand("${EMPTY:-d}", &env).as_deref(), Ok("d"));
        assert_eq!(expand("${EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(expand("a$$b $x", &env).as_deref(), Ok("a$b $x"));
        assert_eq!(expand("plain", &env).as_deref(), Ok("plain"));
        // Defaults nest, and are expanded only when used.
        assert_eq!(
            expand("${NOPE:-${HOME}/d}/x", &env).as_deref(),
            Ok("/home/bot/d/x")
        );
        assert_eq!(
            expand("${NOPE:-${ALSO_NOPE:-/app}/d}", &env).as_deref(),
            Ok("/app/d")
        );
        assert_eq!(
            expand("${HOME:-${UNSET_BUT_UNUSED}}", &env).as_deref(),
            Ok("/home/bot")
        );
        assert!(
            expand("${NOPE:-${HOME}", &env)
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert!(
            expand("${NOPE}", &env)
                .unwrap_err()
                .contains("${NOPE} is not set")
        );
        assert!(expand("${HOME", &env).unwrap_err().contains("unclosed"));
        assert!(
            expand("${a b}", &env)
                .unwrap_err()
                .contains("not a variable")
        );
    }

    #[test]
    fn a_parse_error_names_the_line_and_key_but_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\nTOKEN='unclosed s3cret\nB=more-s3cret\n").unwrap();
        let e = read_env_file(&path).unwrap_err();
        assert!(
            e.ends_with(".env:2: cannot parse the line of TOKEN (its value is not shown)"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        let deep = format!("{}x{}", "${A:-".repeat(50_000), "}".repeat(50_000));
        let started = std::time::Instant::now();
        let e = expand(&deep, &|_| None).unwrap_err();
        assert!(e.contains("nested more than 8 deep"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(expand("${A:-${B:-${C:-z}}}", &|_| None).unwrap(), "z");
    }

    #[test]
    fn reads_env_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# comment\nA=1\nexport B=\"two words\"\n").unwrap();
        let vars = read_env_file(&path).unwrap();
        assert_eq!(
            vars,
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert!(read_env_file(&dir.path().join("missing")).is_err());
    }
}
