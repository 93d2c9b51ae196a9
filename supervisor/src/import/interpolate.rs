//! supervisord's `%(name)s` expansions and its `KEY=value,KEY2="v,2"` environment syntax.

/// A value an expansion can take.
#[derive(Clone, Debug)]
pub enum Val {
    Text(String),
    Number(i64),
}

/// Expands Python %-format references (`%(here)s`, `%(process_num)02d`, `%%`). `%(ENV_X)s`
/// becomes `${X}`, which our configuration expands from the environment at start, as
/// supervisord does when it reads its file. Every other `$` is doubled, so that nothing in the
/// value is mistaken for one of our references.
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<Val>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['%', '$']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix('$') {
            out.push_str("$$");
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("%%") {
            out.push('%');
            rest = after;
            continue;
        }
        let Some(after) = tail.strip_prefix("%(") else {
            return Err(format!(
                "a lone '%' in {text:?} (write %% for a literal one)"
            ));
        };
        let close = after
            .find(')')
            .ok_or_else(|| format!("unclosed \"%(\" in {text:?}"))?;
        let name = &after[..close];
        let spec_and_rest = &after[close + 1..];
        let conv_at = spec_and_rest
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("%({name}) has no conversion (such as s or d) in {text:?}"))?;
        let spec = &spec_and_rest[..conv_at];
        let conv = spec_and_rest.as_bytes()[conv_at] as char;
        rest = &spec_and_rest[conv_at + 1..];
        if let Some(var) = name.strip_prefix("ENV_") {
            out.push_str(&format!("${{{var}}}"));
            continue;
        }
        let value = lookup(name).ok_or_else(|| {
            format!("%({name}){spec}{conv} cannot be expanded here (known: here, program_name, process_num, group_name, host_node_name, ENV_*)")
        })?;
        out.push_str(
            &format_one(&value, spec, conv)
                .map_err(|e| format!("{e} in {text:?}"))?
                .replace('$', "$$"),
        );
    }
    out.push_str(rest);
    Ok(out)
}

/// One Python conversion: flags `0` and `-`, a width, `s`, `d` or `r`.
fn format_one(value: &Val, spec: &str, conv: char) -> Result<String, String> {
    let zero = spec.starts_with('0');
    let left = spec.starts_with('-');
    let width: usize = spec.trim_start_matches(['0', '-']).parse().unwrap_or(0);
    let body = match (conv, value) {
        ('s' | 'r', Val::Text(t)) => t.clone(),
        ('s' | 'r' | 'd' | 'i', Val::Number(n)) => n.to_string(),
        ('d' | 'i', Val::Text(t)) => return Err(format!("%d of the text {t:?}")),
        (other, _) => return Err(format!("unsupported conversion %{other}")),
    };
    Ok(if body.len() >= width {
        body
    } else if left {
        format!("{body:<width$}")
    } else if zero && matches!(value, Val::Number(_)) {
        let (sign, digits) = body
            .strip_prefix('-')
            .map_or(("", body.as_str()), |d| ("-", d));
        format!("{sign}{digits:0>w$}", w = width - sign.len())
    } else {
        format!("{body:>width$}")
    })
}

/// supervisord's `environment`: `KEY=value,KEY2="quoted, with comma"`, values in single or
/// double quotes or bare; whitespace and newlines around the pairs are ignored.
pub fn environment_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!(
                "expected KEY=value pairs separated by commas, in {text:?}"
            ));
        }
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek() {
            Some(&q) if q == '"' || q == '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == q => break,
                        Some('\\') if q == '"' => {
                            if let Some(c) = chars.next() {
                                value.push(c);
                            }
                        }
                        Some(c) => value.push(c),
                        None => return Err(format!("unclosed quote in {text:?}")),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '\n' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim_end().to_owned();
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<Val> {
        match name {
            "here" => Some(Val::Text("/etc/supervisor".into())),
            "program_name" => Some(Val::Text("celery".into())),
            "process_num" => Some(Val::Number(7)),
            "group_name" => Some(Val::Text("workers".into())),
            _ => None,
        }
    }

    #[test]
    fn python_format_references() {
        let i = |t: &str| interpolate(t, &vars);
        assert_eq!(i("%(here)s/app").unwrap(), "/etc/supervisor/app");
        assert_eq!(
            i("%(program_name)s_%(process_num)02d").unwrap(),
            "celery_07"
        );
        assert_eq!(
            i("%(process_num)d %(process_num)3d %(process_num)-3d|").unwrap(),
            "7   7 7  |"
        );
        assert_eq!(i("%(group_name)s").unwrap(), "workers");
        assert_eq!(
            i("100%% $HOME %(ENV_HOME)s").unwrap(),
            "100% $$HOME ${HOME}"
        );
        assert!(i("%(nope)s").unwrap_err().contains("cannot be expanded"));
        assert!(i("50%").unwrap_err().contains("lone '%'"));
        assert!(i("%(here").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn environment_syntax() {
        assert_eq!(
            environment_pairs("A=\"1\",B='two, three',C=bare value,\n  D=\"q\\\"uote\"").unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "two, three".into()),
                ("C".into(), "bare value".into()),
                ("D".into(), "q\"uote".into()),
            ]
        );
        assert_eq!(environment_pairs("  ").unwrap(), []);
        assert!(environment_pairs("A").is_err());
        assert!(environment_pairs("A=\"open").is_err());
    }
}
