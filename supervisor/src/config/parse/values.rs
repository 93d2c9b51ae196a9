//! The walker that collects every problem with its line and key, and the readers of single
//! values (strings, numbers, durations, sizes, signals, commands, environments) that every
//! section shares: the bottom layer of the reader.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::expand::expand;
use crate::config::units::{parse_bytes, parse_duration, parse_signal};
use crate::config::{ConfigError, ConfigErrors};

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// A table's entry: its key (with its place in the file), name, path and value.
pub(super) type Entry<'t, 'i> = (&'t Spanned<Cow<'i, str>>, &'t str, String, &'t Value<'i>);
pub(super) type Env<'e> = dyn Fn(&str) -> Option<String> + 'e;

/// The longest duration any key accepts (a week: longer than any sensible timeout, and far
/// from the limits of the clock's arithmetic).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) struct Walker<'a> {
    pub(super) file: &'a Path,
    pub(super) src: &'a str,
    /// The folder relative paths resolve against.
    pub(super) base: PathBuf,
    pub(super) errors: Vec<ConfigError>,
    /// Problems that do not stop a start (see [`crate::config::Config::warnings`]).
    pub(super) warnings: Vec<ConfigError>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(file: &'a Path, src: &'a str) -> Self {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
        let base = absolute
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("/"));
        Self {
            file,
            src,
            base,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn warning(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn finish_errors(&mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        errors.sort_by(|a, b| a.line.cmp(&b.line).then_with(|| a.key.cmp(&b.key)));
        errors.dedup();
        ConfigErrors(errors)
    }

    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        path: &str,
        known: &[&str],
    ) {
        let hint = suggest(key.get_ref(), known);
        self.error(key.span(), path, format!("unknown key{hint}"));
    }

    /// The entries of table `t` whose keys its list `known` declares, each with its key, name,
    /// path (`prefix.name`) and value; the others are reported as unknown keys here. Each
    /// table's key list is its one declaration: what is accepted, suggested for a typo and
    /// documented (docs/CONFIG.md, held to it by a test), whatever a reader handles.
    pub(super) fn entries<'t, 'i>(
        &mut self,
        t: &'t DeTable<'i>,
        prefix: &str,
        known: &[&str],
    ) -> Vec<Entry<'t, 'i>> {
        let mut entries = Vec::new();
        for (key, value) in t.iter() {
            let name: &str = key.get_ref().as_ref();
            let path = format!("{prefix}.{name}");
            if known.contains(&name) {
                entries.push((key, name, path, value));
            } else {
                self.unknown_key(key, &path, known);
            }
        }
        entries
    }

    pub(super) fn type_error(&mut self, v: &Value<'_>, path: &str, expected: &str) {
        let found = v.get_ref().type_str();
        self.error(
            v.span(),
            path,
            format!("expected {expected}, found {}", article(found)),
        );
    }

    pub(super) fn table<'t, 'i>(
        &mut self,
        v: &'t Value<'i>,
        path: &str,
    ) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.type_error(v, path, "a table");
                None
            }
        }
    }

    pub(super) fn string(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => match expand(s, env) {
                Ok(s) => Some(s),
                Err(message) => {
                    self.error(v.span(), path, message);
                    None
                }
            },
            _ => {
                self.type_error(v, path, "a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(v, path, "true or false");
                None
            }
        }
    }

    /// A boolean, or a string that expands (`${VAR}`) to `true` or `false`: for keys one file
    /// sets differently per place (`autostart` of a program that runs in its own container).
    pub(super) fn expanded_boolean(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<bool> {
        if !matches!(v.get_ref(), DeValue::String(_)) {
            return self.boolean(v, path);
        }
        let expanded = matches!(v.get_ref(), DeValue::String(s) if s.contains("${"));
        match self.string(v, path, env)?.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            other => {
                let mut message = format!("expected true or false, found {other:?}");
                if expanded {
                    message.push_str(&format!(" (from {})", raw(v)));
                }
                self.error(v.span(), path, message);
                None
            }
        }
    }

    pub(super) fn integer(&mut self, v: &Value<'_>, path: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.type_error(v, path, "an integer");
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span(),
                    path,
                    format!("{} is out of range ({min} to {max})", raw(v)),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, v: &Value<'_>, path: &str) -> Option<Duration> {
        let result = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n < 0 => Err(format!("{n} is negative; durations cannot be")),
                Ok(n) => Ok(Duration::from_secs(n as u64)),
                Err(_) => Err(format!("{} is too large", i.as_str())),
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(x) if x < 0.0 => Err(format!("{x} is negative; durations cannot be")),
                Ok(x) => {
                    Duration::try_from_secs_f64(x).map_err(|_| format!("{x} is not a duration"))
                }
                Err(_) => Err(format!("{} is not a duration", f.as_str())),
            },
            DeValue::String(s) => parse_duration(s),
            _ => {
                self.type_error(
                    v,
                    path,
                    "a duration (seconds, or a string such as \"250ms\")",
                );
                return None;
            }
        };
        // Bounded, so that every deadline computed from it (now + duration) exists.
        let result = result.and_then(|d| {
            if d > MAX_DURATION {
                Err(format!(
                    "{} s is longer than the longest duration accepted (7 days)",
                    d.as_secs()
                ))
            } else {
                Ok(d)
            }
        });
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    pub(super) fn bytes(&mut self, v: &Value<'_>, path: &str) -> Option<u64> {
        let result = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if n >= 0 => Ok(n as u64),
                _ => Err(format!("{} is not a size in bytes", i.as_str())),
            },
            DeValue::String(s) => parse_bytes(s),
            _ => {
                self.type_error(v, path, "a size (bytes, or a string such as \"50MB\")");
                return None;
            }
        };
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    pub(super) fn signal(&mut self, v: &Value<'_>, path: &str) -> Option<Signal> {
        let result = match v.get_ref() {
            DeValue::String(s) => parse_signal(s),
            DeValue::Integer(i) => parse_signal(i.as_str()),
            _ => {
                self.type_error(v, path, "a signal name such as \"TERM\"");
                return None;
            }
        };
        result.map_err(|m| self.error(v.span(), path, m)).ok()
    }

    pub(super) fn string_list(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Vec<String>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(v, path, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match self.string(item, path, env) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn command(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Option<Vec<String>> {
        let mut argv = self.argv(v, path, env)?;
        // A relative program path with a slash is relative to the config file, like every path.
        if argv[0].contains('/') && !argv[0].starts_with('/') {
            argv[0] = self.resolve(&argv[0]).to_string_lossy().into_owned();
        }
        Some(argv)
    }

    /// A command as written: an argv array, or a command line split like a shell's words.
    pub(super) fn argv(&mut self, v: &Value<'_>, path: &str, env: &Env<'_>) -> Option<Vec<String>> {
        let argv = match v.get_ref() {
            DeValue::String(_) => {
                let line = self.string(v, path, env)?;
                match shlex::split(&line) {
                    Some(words) => words,
                    None => {
                        self.error(v.span(), path, "unbalanced quotes in the command line");
                        return None;
                    }
                }
            }
            DeValue::Array(_) => self.string_list(v, path, env)?,
            _ => {
                self.type_error(v, path, "an array of strings (or a command line string)");
                return None;
            }
        };
        if argv.first().is_none_or(|a| a.is_empty()) {
            self.error(v.span(), path, "the command is empty");
            return None;
        }
        Some(argv)
    }

    pub(super) fn environment(
        &mut self,
        v: &Value<'_>,
        path: &str,
        env: &Env<'_>,
    ) -> Vec<(String, String)> {
        let Some(t) = self.table(v, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, value) in t.iter() {
            let name = k.get_ref().as_ref();
            let kpath = format!("{path}.{name}");
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error(k.span(), &kpath, "not a valid environment variable name");
                continue;
            }
            let text = match value.get_ref() {
                DeValue::String(_) => self.string(value, &kpath, env),
                DeValue::Integer(i) => Some(i.as_str().to_owned()),
                DeValue::Float(f) => Some(f.as_str().to_owned()),
                DeValue::Boolean(b) => Some(b.to_string()),
                _ => {
                    self.type_error(value, &kpath, "a string");
                    None
                }
            };
            if let Some(text) = text {
                out.push((name.to_owned(), text));
            }
        }
        out
    }

    pub(super) fn number(&mut self, v: &Value<'_>, path: &str) -> Option<f64> {
        match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse().ok(),
            _ => {
                self.type_error(v, path, "a number");
                None
            }
        }
    }
}

pub(super) fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

pub(super) fn get<'t, 'i>(
    t: &'t DeTable<'i>,
    key: &str,
) -> Option<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Value<'i>)> {
    t.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}

pub(super) fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// The value as written, for messages.
pub(super) fn raw(v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::String(s) => format!("{s:?}"),
        DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_owned(),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => article(other.type_str()),
    }
}

/// ` (did you mean "x"?)` when a known key is close to the unknown one.
pub(super) fn suggest(unknown: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
