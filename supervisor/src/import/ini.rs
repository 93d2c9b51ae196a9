//! supervisord's INI dialect (Python's RawConfigParser as supervisord configures it): `;` and
//! `#` comments, inline comments only after whitespace, `=` or `:` between key and value, keys
//! case-insensitive, indented lines continuing the previous value, repeated sections merged, and
//! `[include] files = ...` globs relative to the including file.

use std::path::{Path, PathBuf};

/// One `[section]`, with where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub options: Vec<Opt>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Opt> {
        self.options.iter().rev().find(|o| o.key == key)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opt {
    pub key: String,
    pub value: String,
    /// Where it was read: a section repeated in an included file gathers options of both.
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct IniError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Reads `path` and every file its `[include]` sections name, in supervisord's order: the
/// including file's sections first, then each included file (sorted glob matches).
pub fn read(path: &Path) -> Result<Vec<Section>, IniError> {
    let mut sections = Vec::new();
    read_into(path, &mut sections, 0)?;
    Ok(sections)
}

fn read_into(path: &Path, sections: &mut Vec<Section>, depth: u32) -> Result<(), IniError> {
    if depth > 10 {
        return Err(IniError {
            file: path.to_owned(),
            line: 0,
            message: "includes nest more than 10 deep (an include loop?)".into(),
        });
    }
    let text = crate::config::text::read_text(path).map_err(|(line, message)| IniError {
        file: path.to_owned(),
        line,
        message,
    })?;
    let parsed = parse(path, &text)?;
    let here = path.parent().unwrap_or(Path::new("."));
    let mut includes = Vec::new();
    for section in parsed {
        if section.name == "include" {
            includes.push(section.clone());
        }
        match sections.iter_mut().find(|s| s.name == section.name) {
            // Repeated sections merge; later options win.
            Some(existing) => existing.options.extend(section.options),
            None => sections.push(section),
        }
    }
    for include in includes {
        let Some(files) = include.get("files") else {
            return Err(IniError {
                file: path.to_owned(),
                line: include.line,
                message: "[include] has no \"files\" option".into(),
            });
        };
        let here_text = here.display().to_string();
        for pattern in files.value.split_whitespace() {
            let pattern = pattern.replace("%(here)s", &here_text);
            let full = if Path::new(&pattern).is_absolute() {
                PathBuf::from(&pattern)
            } else {
                here.join(&pattern)
            };
            let mut matches: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
                .map_err(|e| IniError {
                    file: path.to_owned(),
                    line: files.line,
                    message: format!("bad include pattern {pattern:?}: {e}"),
                })?
                .filter_map(Result::ok)
                .collect();
            // A pattern without wildcards names one file: missing is a mistake worth stopping
            // for (supervisord only warns, and then runs without it). A glob may match nothing.
            let wildcard = pattern.contains(['*', '?', '[']);
            if matches.is_empty() && !wildcard {
                return Err(IniError {
                    file: path.to_owned(),
                    line: files.line,
                    message: format!("included file {} does not exist", full.display()),
                });
            }
            matches.sort();
            for m in matches {
                read_into(&m, sections, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Parses one file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Section>, IniError> {
    let mut sections: Vec<Section> = Vec::new();
    // Indentation of the current option's first line, to tell continuations apart.
    let mut option_indent: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let content = strip_inline_comment(raw);
        let content_trimmed = content.trim();
        let continued = option_indent
            .filter(|&opt_indent| indent > opt_indent)
            .and_then(|_| sections.last_mut())
            .and_then(|section| section.options.last_mut());
        if let Some(opt) = continued {
            if !content_trimmed.is_empty() {
                opt.value.push('\n');
                opt.value.push_str(content_trimmed);
            }
            continue;
        }
        if content_trimmed.starts_with('[') {
            let Some(end) = content_trimmed.find(']') else {
                return Err(IniError {
                    file: path.to_owned(),
                    line: line_no,
                    message: format!("section header without ']': {content_trimmed}"),
                });
            };
            sections.push(Section {
                name: content_trimmed[1..end].trim().to_owned(),
                file: path.to_owned(),
                line: line_no,
                options: Vec::new(),
            });
            option_indent = None;
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(IniError {
                file: path.to_owned(),
                line: line_no,
                message: format!("an option before any [section]: {content_trimmed}"),
            });
        };
        let split = content_trimmed.find(['=', ':']).ok_or_else(|| IniError {
            file: path.to_owned(),
            line: line_no,
            message: format!("expected \"key = value\": {content_trimmed}"),
        })?;
        let (key, value) = content_trimmed.split_at(split);
        section.options.push(Opt {
            key: key.trim().to_lowercase(),
            value: value[1..].trim().to_owned(),
            file: path.to_owned(),
            line: line_no,
        });
        option_indent = Some(indent);
    }
    Ok(sections)
}

/// Cuts a `;` or `#` comment that follows whitespace (`a=b ;c` → `a=b`; `a=b;c` stays).
fn strip_inline_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if (b == b';' || b == b'#') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &line[..i];
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_continuations_and_case() {
        let text = "; a comment\n# another\n[program:web]\nCommand = /bin/web --a=1 ;inline\nenvironment=A=\"1\",\n    B=\"2\"\nurl=http://x/#frag\nsemi=a;b\n[group:g] ; trailing\nprograms: web\n";
        let s = parse(Path::new("x.conf"), text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "program:web");
        assert_eq!(s[0].line, 3);
        let opts: Vec<(&str, &str, usize)> = s[0]
            .options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str(), o.line))
            .collect();
        assert_eq!(
            opts,
            [
                ("command", "/bin/web --a=1", 4),
                ("environment", "A=\"1\",\nB=\"2\"", 5),
                ("url", "http://x/#frag", 7),
                ("semi", "a;b", 8),
            ]
        );
        assert_eq!(s[1].name, "group:g");
        assert_eq!(s[1].get("programs").unwrap().value, "web");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(Path::new("x.conf"), "key=value\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.conf:1: an option before any [section]: key=value"
        );
        let e = parse(Path::new("x.conf"), "[a]\njunk\n").unwrap_err();
        assert_eq!(e.to_string(), "x.conf:2: expected \"key = value\": junk");
    }

    #[test]
    fn includes_are_globbed_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("main.conf"),
            "[supervisord]\nnodaemon=true\n[include]\nfiles = conf.d/*.conf\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("conf.d/b.conf"), "[program:b]\ncommand=b\n").unwrap();
        std::fs::write(dir.path().join("conf.d/a.conf"), "[program:a]\ncommand=a\n").unwrap();
        let s = read(&dir.path().join("main.conf")).unwrap();
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["supervisord", "include", "program:a", "program:b"]);
        assert_eq!(s[2].file, dir.path().join("conf.d/a.conf"));
    }
}
