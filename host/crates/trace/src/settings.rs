//! Trace settings with Triton's names and semantics (its trace extension):
//! `trace_level` (OFF, or TIMESTAMPS and/or TENSORS), `trace_rate` (one
//! request of every N is traced), `trace_count` (traces left to take, -1
//! for no limit), `log_frequency` (write the file every N traces, 0: at
//! exit) and `trace_file`. A model's settings are the global ones with the
//! fields it specified replaced; a field set to null goes back to the
//! global value.

use std::fmt;

/// What a trace records: a set of [`Level::TIMESTAMPS`] and
/// [`Level::TENSORS`]; [`Level::OFF`] when empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level(u8);

impl Level {
    pub const OFF: Level = Level(0);
    pub const TIMESTAMPS: Level = Level(1);
    pub const TENSORS: Level = Level(2);

    pub fn is_off(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Level) -> bool {
        self.0 & other.0 == other.0 && !other.is_off()
    }

    /// Triton's level names: `OFF` alone, or any of `TIMESTAMPS` and
    /// `TENSORS`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Level, String> {
        let mut level = Level::OFF;
        for name in names {
            match name.as_ref() {
                "OFF" if names.len() == 1 => {}
                "OFF" => return Err("Expect only one trace level 'OFF' is specified".into()),
                "TIMESTAMPS" => level.0 |= Level::TIMESTAMPS.0,
                "TENSORS" => level.0 |= Level::TENSORS.0,
                other => {
                    return Err(format!(
                        "unknown trace level '{}' (OFF, TIMESTAMPS or TENSORS)",
                        kiln_types::text::clip(other)
                    ))
                }
            }
        }
        Ok(level)
    }

    pub fn names(self) -> Vec<String> {
        if self.is_off() {
            return vec!["OFF".into()];
        }
        let mut names = Vec::new();
        if self.contains(Level::TIMESTAMPS) {
            names.push("TIMESTAMPS".into());
        }
        if self.contains(Level::TENSORS) {
            names.push("TENSORS".into());
        }
        names
    }
}

/// Where traces go: Triton's JSON files, or OpenTelemetry spans over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Triton,
    OpenTelemetry,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Triton => "triton",
            Mode::OpenTelemetry => "opentelemetry",
        })
    }
}

/// One scope's settings (the server's, or a model's after its overrides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    pub level: Level,
    pub rate: u32,
    pub count: i32,
    pub log_frequency: u32,
    /// Empty: none (Triton mode then traces nothing).
    pub file: String,
}

impl Default for Values {
    /// Triton's defaults.
    fn default() -> Self {
        Self {
            level: Level::OFF,
            rate: 1000,
            count: -1,
            log_frequency: 0,
            file: String::new(),
        }
    }
}

impl Values {
    /// Why these settings trace nothing, if they do not (Triton's reasons).
    pub fn invalid_reason(&self, mode: Mode) -> Option<&'static str> {
        if self.level.is_off() {
            Some("tracing is disabled")
        } else if self.rate == 0 {
            Some("sample rate must be non-zero")
        } else if mode == Mode::Triton && self.file.is_empty() {
            Some("trace file name is not given")
        } else {
            None
        }
    }
}

/// One field of an update: left as it is, back to the global value, or set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> Change<T> {
    /// The field after this change: `current` is the scope's own value if it
    /// specified one.
    fn apply(&self, current: Option<&T>) -> Option<T> {
        match self {
            Change::Keep => current.cloned(),
            Change::Clear => None,
            Change::Set(v) => Some(v.clone()),
        }
    }
}

/// A settings update, as both protocols deliver it. `trace_file` is not
/// here: as in Triton it cannot be changed over the network (it names a
/// file the server writes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub level: Change<Level>,
    pub rate: Change<u32>,
    pub count: Change<i32>,
    pub log_frequency: Change<u32>,
}

/// The error of an update, by kind: the protocols map `Unsupported` to
/// UNIMPLEMENTED / 400 and `Invalid` to INVALID_ARGUMENT / 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    Invalid(String),
    Unsupported(String),
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Invalid(m) | UpdateError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl Update {
    /// Reads an update from `(name, values)` pairs, `None` meaning null
    /// (clear): the HTTP body's members and the gRPC request's map (where an
    /// empty value list means clear). Unknown names are errors, so a typo
    /// is not silently ignored; `trace_mode` as the server reports it is
    /// accepted unchanged, so a client may post back what it read.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, Option<Vec<String>>)>,
        mode: Mode,
    ) -> Result<Update, UpdateError> {
        let mut update = Update::default();
        for (name, values) in entries {
            match name {
                "trace_file" => {
                    return Err(UpdateError::Unsupported(
                        "trace file location can not be updated through network protocol".into(),
                    ))
                }
                "trace_mode" => {
                    let same = values
                        .as_deref()
                        .is_some_and(|v| v.len() == 1 && v[0] == mode.to_string());
                    if !same {
                        return Err(UpdateError::Unsupported(
                            "the trace mode can not be updated through network protocol".into(),
                        ));
                    }
                }
                "trace_level" => {
                    update.level = match values {
                        None => Change::Clear,
                        Some(v) => Change::Set(Level::parse(&v).map_err(UpdateError::Invalid)?),
                    }
                }
                "trace_rate" => update.rate = number(name, values, 0)?,
                "trace_count" => update.count = number(name, values, -1)?,
                "log_frequency" => update.log_frequency = number(name, values, 0)?,
                other => {
                    return Err(UpdateError::Invalid(format!(
                        "unknown trace setting '{}' (trace_level, trace_rate, trace_count, log_frequency)",
                        kiln_types::text::clip(other)
                    )))
                }
            }
        }
        Ok(update)
    }
}

/// A numeric setting given as one string ("1000"), at least `min`.
fn number<T>(name: &str, values: Option<Vec<String>>, min: T) -> Result<Change<T>, UpdateError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
{
    let Some(values) = values else {
        return Ok(Change::Clear);
    };
    let [text] = values.as_slice() else {
        return Err(UpdateError::Invalid(format!(
            "'{name}' takes one value, got {}",
            values.len()
        )));
    };
    let shown = kiln_types::text::clip(text);
    let value: T = text
        .trim()
        .parse()
        .map_err(|_| UpdateError::Invalid(format!("Unable to parse '{name}', got: {shown}")))?;
    if value < min {
        return Err(UpdateError::Invalid(format!(
            "Unable to parse '{name}'. Expecting value >= {min}, got: {shown}"
        )));
    }
    Ok(Change::Set(value))
}

/// The fields a scope set itself; the rest come from the global settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overrides {
    pub level: Option<Level>,
    pub rate: Option<u32>,
    pub count: Option<i32>,
    pub log_frequency: Option<u32>,
}

impl Overrides {
    /// These overrides after `update`.
    pub fn updated(&self, update: &Update) -> Overrides {
        Overrides {
            level: update.level.apply(self.level.as_ref()),
            rate: update.rate.apply(self.rate.as_ref()),
            count: update.count.apply(self.count.as_ref()),
            log_frequency: update.log_frequency.apply(self.log_frequency.as_ref()),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// The values of a scope with these overrides over `base`.
    pub fn over(&self, base: &Values) -> Values {
        Values {
            level: self.level.unwrap_or(base.level),
            rate: self.rate.unwrap_or(base.rate),
            count: self.count.unwrap_or(base.count),
            log_frequency: self.log_frequency.unwrap_or(base.log_frequency),
            file: base.file.clone(),
        }
    }
}

/// A scope's settings as the protocols answer them, in Triton's order:
/// `trace_level`, `trace_rate`, `trace_count`, then in Triton mode
/// `log_frequency` and `trace_file`, then `trace_mode`.
pub fn report(values: &Values, mode: Mode) -> Vec<(&'static str, Vec<String>)> {
    let mut out = vec![
        ("trace_level", values.level.names()),
        ("trace_rate", vec![values.rate.to_string()]),
        ("trace_count", vec![values.count.to_string()]),
    ];
    if mode == Mode::Triton {
        out.push(("log_frequency", vec![values.log_frequency.to_string()]));
        out.push(("trace_file", vec![values.file.clone()]));
    }
    out.push(("trace_mode", vec![mode.to_string()]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(
        pairs: &[(&'static str, Option<&[&str]>)],
    ) -> Vec<(&'static str, Option<Vec<String>>)> {
        pairs
            .iter()
            .map(|(k, v)| (*k, v.map(|v| v.iter().map(|s| s.to_string()).collect())))
            .collect()
    }

    #[test]
    fn levels_parse_as_triton_names_them() {
        assert_eq!(Level::parse(&["OFF"]).unwrap(), Level::OFF);
        let both = Level::parse(&["TIMESTAMPS", "TENSORS"]).unwrap();
        assert!(both.contains(Level::TIMESTAMPS) && both.contains(Level::TENSORS));
        assert_eq!(both.names(), ["TIMESTAMPS", "TENSORS"]);
        assert!(Level::parse(&["OFF", "TIMESTAMPS"])
            .unwrap_err()
            .contains("only one"));
        assert!(Level::parse(&["LOUD"]).unwrap_err().contains("LOUD"));
    }

    #[test]
    fn updates_parse_clear_and_refuse_what_triton_refuses() {
        let u = Update::parse(
            entries(&[
                ("trace_level", Some(&["TIMESTAMPS"])),
                ("trace_rate", Some(&["5"])),
                ("trace_count", None),
                ("trace_mode", Some(&["triton"])),
            ]),
            Mode::Triton,
        )
        .unwrap();
        assert_eq!(u.level, Change::Set(Level::TIMESTAMPS));
        assert_eq!(u.rate, Change::Set(5));
        assert_eq!(u.count, Change::Clear);
        assert_eq!(u.log_frequency, Change::Keep);
        let refused = |pairs: &[(&'static str, Option<&[&str]>)]| {
            Update::parse(entries(pairs), Mode::Triton).unwrap_err()
        };
        assert!(matches!(
            refused(&[("trace_file", Some(&["/etc/passwd"]))]),
            UpdateError::Unsupported(_)
        ));
        assert!(matches!(
            refused(&[("trace_mode", Some(&["opentelemetry"]))]),
            UpdateError::Unsupported(_)
        ));
        let e = refused(&[("trace_count", Some(&["-2"]))]).to_string();
        assert!(e.contains("trace_count") && e.contains(">= -1"), "{e}");
        let e = refused(&[("trace_rate", Some(&["many"]))]).to_string();
        assert!(e.contains("Unable to parse 'trace_rate'"), "{e}");
        let e = refused(&[("trace_rat", Some(&["1"]))]).to_string();
        assert!(e.contains("unknown trace setting 'trace_rat'"), "{e}");
        let long = "x".repeat(10_000);
        let e = refused(&[("trace_rate", Some(&[long.as_str()]))]).to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn overrides_fall_back_to_global_values() {
        let global = Values {
            level: Level::TIMESTAMPS,
            file: "/tmp/t.json".into(),
            ..Values::default()
        };
        let mine = Overrides::default().updated(&Update {
            rate: Change::Set(1),
            ..Default::default()
        });
        let v = mine.over(&global);
        assert_eq!((v.level, v.rate, v.count), (Level::TIMESTAMPS, 1, -1));
        let cleared = mine.updated(&Update {
            rate: Change::Clear,
            ..Default::default()
        });
        assert!(cleared.is_empty());
        assert_eq!(cleared.over(&global).rate, 1000);
    }

    #[test]
    fn invalid_settings_say_why() {
        let mut v = Values::default();
        assert_eq!(v.invalid_reason(Mode::Triton), Some("tracing is disabled"));
        v.level = Level::TIMESTAMPS;
        assert_eq!(
            v.invalid_reason(Mode::Triton),
            Some("trace file name is not given")
        );
        assert_eq!(v.invalid_reason(Mode::OpenTelemetry), None);
        v.rate = 0;
        assert_eq!(
            v.invalid_reason(Mode::OpenTelemetry),
            Some("sample rate must be non-zero")
        );
    }
}
