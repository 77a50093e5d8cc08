//! Where each setting comes from: the command line, else the environment, else the TOML file
//! named by `--config` (or `VISAVIS_CONFIG`), else the default declared in [`Settings`].
//!
//! [`Settings`] stays the one definition of every setting: name, help, default, parser. The
//! file's keys are the long option names. Values from the environment and the file are handed
//! to clap as command-line arguments, for the options the command line leaves out, so clap
//! checks and converts them as it does flags (ranges, `requires`), and an option added to
//! [`Settings`] works in the file with no code of its own.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::Settings;

/// The subcommand that prints the settings in effect and their problems.
pub const CHECK_CONFIG: &str = "check-config";

/// The id of `--config`, which names the file and so cannot be set in it.
const CONFIG: &str = "config";

/// What the binary was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `visavis [OPTIONS]`: serve.
    Serve,
    /// `visavis check-config [OPTIONS]`.
    CheckConfig,
}

/// Where a setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// The environment variable named.
    Env(String),
    /// The `--config` file.
    File,
    /// Nobody set it: the default (or unset, for options without one).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(name) => write!(f, "env {name}"),
            Self::File => f.write_str("file"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// The shape of a setting's value, in the file as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch (`--no-turn`): `true` or `false`.
    Switch,
    /// A number.
    Integer,
    /// Anything else given as text: addresses, paths, names.
    Text,
    /// A repeatable option: a list of texts.
    List,
}

/// One setting as it is in effect.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The long option name, which is also its key in the file.
    pub key: String,
    pub kind: Kind,
    /// Its values as text: none when unset, several for a repeatable option.
    pub values: Vec<String>,
    pub source: Source,
    /// A secret (`hide_env_values`), not to be printed.
    pub secret: bool,
}

/// The settings in effect, and where each comes from.
#[derive(Debug)]
pub struct Loaded {
    pub mode: Mode,
    pub settings: Settings,
    /// Every setting but `--config`, in the order of `--help`.
    pub entries: Vec<Entry>,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// What is wrong with the file, each naming it (and the line and key): it cannot be read,
    /// is not TOML, has an unknown key or a value of the wrong type or out of range. Those keys
    /// are left out of [`Loaded::settings`].
    pub file_problems: Vec<String>,
}

/// The command line (with the environment and the file) does not make settings, or asks for
/// help or the version: clap's error, to print.
#[derive(Debug)]
pub struct LoadError {
    pub mode: Mode,
    pub error: clap::Error,
}

/// The whole command line: [`Settings`], and the `check-config` subcommand that takes the same
/// options.
pub fn command() -> Command {
    command_with_env(true)
}

/// As [`command`]; without `env`, clap reads no environment variable (the loader hands them
/// in itself).
fn command_with_env(env: bool) -> Command {
    let mut settings = Settings::command();
    if !env {
        settings = settings.mut_args(|arg| arg.env(None));
    }
    let check = Command::new(CHECK_CONFIG)
        .about("Print the settings in effect, where each comes from, and every problem found")
        .long_about(
            "Print the settings in effect (as TOML, each with where it comes from: flag, env, \
             file or default) and every problem found: a certificate that does not load, a \
             --public-ip or listen address that is not this machine's, ports that clash, a \
             --data-dir that cannot be written, a bad --config file. Exits 1 if there is any \
             problem, 0 otherwise. Takes the same options as visavis itself.",
        )
        .args(settings.get_arguments().cloned());
    settings
        .subcommand(check)
        .args_conflicts_with_subcommands(true)
        .disable_help_subcommand(true)
}

/// Reads the settings from `args` (the binary's name first), `env` (`std::env::var_os` in the
/// binary) and the file that `--config` or `VISAVIS_CONFIG` names. Precedence: command line,
/// then environment, then file, then the defaults.
pub fn load<I, T>(args: I, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mode = if args.get(1).is_some_and(|a| a == CHECK_CONFIG) {
        Mode::CheckConfig
    } else {
        Mode::Serve
    };
    let fail = |error| LoadError { mode, error };

    // What the command line itself says, read with the real command (so --help and --version
    // come out as documented). Errors wait for the second pass: an option there may need one
    // that the environment or the file gives.
    let first = command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .map_err(fail)?;
    let given = match mode {
        Mode::CheckConfig => first.subcommand_matches(CHECK_CONFIG).unwrap_or(&first),
        Mode::Serve => &first,
    };
    let on_command_line = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);

    let with_env = Settings::command();
    let plain = command_with_env(false);
    let env_name = |id: &str| {
        with_env
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_env())
            .and_then(|name| name.to_str())
            .map(str::to_owned)
    };

    let file = if on_command_line(CONFIG) {
        given.get_one::<PathBuf>(CONFIG).cloned()
    } else {
        env_name(CONFIG)
            .and_then(|name| env(&name))
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (from_file, file_problems) = match &file {
        Some(path) => read_file(&plain, path),
        None => (BTreeMap::new(), Vec::new()),
    };

    // Everything the command line leaves out, from the environment or else the file, as
    // arguments in front of the command line's own.
    let mut layered = vec![args.first().cloned().unwrap_or_else(|| "visavis".into())];
    if mode == Mode::CheckConfig {
        layered.push(CHECK_CONFIG.into());
    }
    let mut sources = BTreeMap::new();
    let mut bad_env = Vec::new();
    for arg in settings_args(&plain) {
        let id = arg.get_id().as_str();
        if on_command_line(id) {
            continue;
        }
        let from_env = env_name(id).and_then(|name| env(&name).map(|value| (name, value)));
        if let Some((name, value)) = from_env {
            match env_arguments(arg, &value).and_then(|a| check_value(&plain, a)) {
                Ok(arguments) => layered.extend(arguments),
                Err(err) => bad_env.push(format!("{name}={value:?}: {err}")),
            }
            sources.insert(id.to_owned(), Source::Env(name));
        } else if let Some(arguments) = from_file.get(id) {
            layered.extend(arguments.iter().cloned());
            sources.insert(id.to_owned(), Source::File);
        }
    }
    if !bad_env.is_empty() {
        let message = format!(
            "environment variables with bad values:\n  {}\n",
            bad_env.join("\n  ")
        );
        return Err(fail(
            clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(&plain),
        ));
    }
    let skip = match mode {
        Mode::CheckConfig => 2,
        Mode::Serve => 1,
    };
    layered.extend(args.iter().skip(skip).cloned());

    let matches = plain.clone().try_get_matches_from(layered).map_err(fail)?;
    let matches = match mode {
        Mode::CheckConfig => matches
            .subcommand_matches(CHECK_CONFIG)
            .cloned()
            .unwrap_or_default(),
        Mode::Serve => matches,
    };
    let settings = Settings::from_arg_matches(&matches).map_err(fail)?;
    let entries = settings_args(&plain)
        .filter(|arg| arg.get_id() != CONFIG)
        .map(|arg| entry(arg, &matches, &sources))
        .collect();
    Ok(Loaded {
        mode,
        settings,
        entries,
        file,
        file_problems,
    })
}

/// The options a setting can come from (not --help, --version).
fn settings_args(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| kind(arg).is_some() && arg.get_long().is_some())
}

fn kind(arg: &Arg) -> Option<Kind> {
    match arg.get_action() {
        ArgAction::SetTrue => Some(Kind::Switch),
        ArgAction::Append => Some(Kind::List),
        ArgAction::Set => {
            let id = arg.get_value_parser().type_id();
            let integer = [
                std::any::TypeId::of::<u8>(),
                std::any::TypeId::of::<u16>(),
                std::any::TypeId::of::<u32>(),
                std::any::TypeId::of::<u64>(),
                std::any::TypeId::of::<usize>(),
                std::any::TypeId::of::<i8>(),
                std::any::TypeId::of::<i16>(),
                std::any::TypeId::of::<i32>(),
                std::any::TypeId::of::<i64>(),
                std::any::TypeId::of::<isize>(),
            ]
            .into_iter()
            .any(|t| id == t);
            Some(if integer { Kind::Integer } else { Kind::Text })
        }
        _ => None,
    }
}

fn long(arg: &Arg) -> &str {
    arg.get_long().unwrap_or_default()
}

/// The arguments that stand for environment variable value `value` of `arg`.
fn env_arguments(arg: &Arg, value: &OsString) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", long(arg));
    if kind(arg) == Some(Kind::Switch) {
        // As clap reads a switch's variable: `true` or `false`.
        return match value.to_str() {
            Some("false") => Ok(Vec::new()),
            Some("true") => Ok(vec![flag.into()]),
            _ => Err("expected true or false".to_owned()),
        };
    }
    let mut argument = OsString::from(format!("{flag}="));
    argument.push(value);
    Ok(vec![argument])
}

/// The arguments each key of the TOML file at `path` stands for (by argument id), and what is
/// wrong with the file.
fn read_file(command: &Command, path: &Path) -> (BTreeMap<String, Vec<OsString>>, Vec<String>) {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => return (BTreeMap::new(), vec![format!("{shown}: cannot read it: {err}")]),
    };
    match DeTable::parse(&text) {
        Ok(table) => {
            let mut keys: Vec<_> = table.get_ref().iter().collect();
            keys.sort_by_key(|(key, _)| key.span().start);
            let keys = keys.into_iter().map(|(key, value)| {
                let line = text[..key.span().start].matches('\n').count() + 1;
                (key.get_ref().as_ref(), value.get_ref(), line)
            });
            parse_keys(command, &shown.to_string(), keys)
        }
        Err(mut err) => {
            err.set_input(Some(&text));
            let message = err.to_string();
            (BTreeMap::new(), vec![format!("{shown}: {}", message.trim_end())])
        }
    }
}

/// [`read_file`] after parsing: `keys` are (key, value, line).
fn parse_keys<'a>(
    command: &Command,
    file: &str,
    keys: impl Iterator<Item = (&'a str, &'a DeValue<'a>, usize)>,
) -> (BTreeMap<String, Vec<OsString>>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    let mut set_as: BTreeMap<String, String> = BTreeMap::new();
    for (key, value, line) in keys {
        let at = format!("{file}:{line}");
        let Some(arg) = settings_args(command)
            .find(|arg| long(arg) == key || arg.get_all_aliases().unwrap_or_default().contains(&key))
        else {
            problems.push(match value {
                DeValue::Table(_) => format!(
                    "{at}: unknown key `{key}`: settings are top-level keys, not in tables like [{key}]"
                ),
                _ => format!("{at}: unknown key `{key}`{}", did_you_mean(command, key)),
            });
            continue;
        };
        let id = arg.get_id().as_str();
        if id == CONFIG {
            problems.push(format!(
                "{at}: `{key}` names the file; it belongs on the command line or in \
                 VISAVIS_CONFIG"
            ));
            continue;
        }
        if let Some(first) = set_as.get(id) {
            problems.push(format!("{at}: `{key}` is set twice (also as `{first}`)"));
            continue;
        }
        set_as.insert(id.to_owned(), key.to_owned());
        match arguments(arg, value).and_then(|a| check_value(command, a)) {
            Ok(arguments) => {
                values.insert(id.to_owned(), arguments);
            }
            Err(err) => problems.push(format!("{at}: `{key}`: {err}")),
        }
    }
    (values, problems)
}

/// The arguments a file value stands for, if it has the shape of `arg`'s values.
fn arguments(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<OsString>, String> {
    let flag = format!("--{}", long(arg));
    let with = |text: &str| OsString::from(format!("{flag}={text}"));
    match (kind(arg), value) {
        (Some(Kind::Switch), DeValue::Boolean(true)) => Ok(vec![flag.into()]),
        (Some(Kind::Switch), DeValue::Boolean(false)) => Ok(Vec::new()),
        (Some(Kind::Switch), _) => Err(format!("expected true or false, not {}", shape(value))),
        (Some(Kind::Integer), DeValue::Integer(n)) => {
            let digits = n.as_str().replace('_', "");
            let n =
                i128::from_str_radix(&digits, n.radix()).map_err(|_| format!("{digits} is not a number"))?;
            Ok(vec![with(&n.to_string())])
        }
        (Some(Kind::Integer), _) => Err(format!("expected a number, not {}", shape(value))),
        (Some(Kind::Text), DeValue::String(s)) => Ok(vec![with(s)]),
        (Some(Kind::Text), _) => Err(format!("expected a string, not {}", shape(value))),
        (Some(Kind::List), DeValue::String(s)) => Ok(vec![with(s)]),
        (Some(Kind::List), DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(with(s)),
                other => Err(format!("expected a list of strings, not of {}", shape(other))),
            })
            .collect(),
        (Some(Kind::List), _) => Err(format!("expected a list of strings, not {}", shape(value))),
        (None, _) => Err("cannot be set in the file".to_owned()),
    }
}

fn shape(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a number",
        DeValue::Float(_) => "a fractional number",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table (settings are top-level keys)",
    }
}

/// `arguments` if clap takes them: its parser for the option decides, ranges included.
/// Complaints about other options (one that this one `requires`) are not this value's.
fn check_value(command: &Command, arguments: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let line = std::iter::once(OsString::from("visavis")).chain(arguments.iter().cloned());
    match command.clone().try_get_matches_from(line) {
        Ok(_) => Ok(arguments),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
            ) =>
        {
            Ok(arguments)
        }
        Err(err) => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or_default();
            Err(first.trim_start_matches("error: ").to_owned())
        }
    }
}

/// ` (did you mean `listen`?)` when a key is close to `key`.
fn did_you_mean(command: &Command, key: &str) -> String {
    settings_args(command)
        .filter(|arg| arg.get_id() != CONFIG)
        .map(|arg| (strsim::jaro(key, long(arg)), long(arg)))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

fn entry(arg: &Arg, matches: &ArgMatches, sources: &BTreeMap<String, Source>) -> Entry {
    let id = arg.get_id().as_str();
    let values = matches
        .get_raw(id)
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let source = sources
        .get(id)
        .cloned()
        .unwrap_or_else(|| match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            _ => Source::Default,
        });
    Entry {
        key: long(arg).to_owned(),
        kind: kind(arg).unwrap_or(Kind::Text),
        values,
        source,
        secret: arg.is_hide_env_values_set(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `args` with the environment `env` and, if given, a file holding `toml`.
    fn load_with(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Loaded {
        try_load(args, env, toml).unwrap_or_else(|e| panic!("{}", e.error))
    }

    fn try_load(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Result<Loaded, LoadError> {
        let dir = std::env::temp_dir().join(format!(
            "visavis-config-test-{}-{}",
            std::process::id(),
            TEST_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("visavis.toml");
        let mut argv = vec!["visavis".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        if let Some(toml) = toml {
            std::fs::write(&path, toml).expect("write the file");
            argv.extend(["--config".to_owned(), path.display().to_string()]);
        }
        let env: BTreeMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let loaded = load(argv, &|name| env.get(name).cloned());
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    static TEST_FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn source(loaded: &Loaded, key: &str) -> Source {
        loaded
            .entries
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no entry {key}"))
            .source
            .clone()
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
        let file = "listen = \"127.0.0.1:1001\"\nroom-capacity = 3\nmesh-limit = 4\nring-timeout = 5\n";
        let env = [("VISAVIS_ROOM_CAPACITY", "7"), ("VISAVIS_MESH_LIMIT", "8")];
        let loaded = load_with(&["--mesh-limit", "9"], &env, Some(file));
        let s = &loaded.settings;
        assert_eq!(s.listen().to_string(), "127.0.0.1:1001", "file over default");
        assert_eq!(s.room_capacity, 7, "env over file");
        assert_eq!(s.mesh_limit, 9, "flag over env and file");
        assert_eq!(s.ring_timeout, 5);
        assert_eq!(s.chat_history, 100, "default");
        assert!(loaded.file_problems.is_empty(), "{:?}", loaded.file_problems);
        assert_eq!(source(&loaded, "listen"), Source::File);
        assert_eq!(
            source(&loaded, "room-capacity"),
            Source::Env("VISAVIS_ROOM_CAPACITY".into())
        );
        assert_eq!(source(&loaded, "mesh-limit"), Source::Flag);
        assert_eq!(source(&loaded, "chat-history"), Source::Default);
        assert_eq!(loaded.mode, Mode::Serve);
    }

    #[test]
    fn preconnect_relay_is_the_default_and_falls_back_to_off_without_a_turn_server() {
        use visavis_protocol::Preconnect;
        let preconnect = |args: &[&str]| load_with(args, &[], None).settings.preconnect();
        assert_eq!(preconnect(&[]), Preconnect::Relay);
        assert_eq!(preconnect(&["--no-turn"]), Preconnect::Off);
        let external = [
            "--no-turn",
            "--turn-url",
            "turn:192.0.2.1:3478",
            "--turn-secret",
            "s",
        ];
        assert_eq!(preconnect(&external), Preconnect::Relay);
        assert_eq!(
            preconnect(&["--preconnect", "direct", "--no-turn"]),
            Preconnect::Direct
        );
        assert_eq!(preconnect(&["--preconnect", "off"]), Preconnect::Off);
        let file = load_with(
            &[],
            &[("VISAVIS_PRECONNECT", "direct")],
            Some("preconnect = \"off\"\n"),
        );
        assert_eq!(file.settings.preconnect(), Preconnect::Direct, "env over file");
    }

    #[test]
    fn lists_and_switches_come_whole_from_one_place() {
        let file = "frame-ancestors = [\"https://a.example\", \"https://b.example\"]\n\
                    allowed-origin = \"https://c.example\"\n\
                    trusted-proxy = [\"10.0.0.0/8\"]\n\
                    no-turn = true\ninsecure-http = false\n";
        let loaded = load_with(&[], &[], Some(file));
        let s = &loaded.settings;
        assert_eq!(s.frame_ancestors, ["https://a.example", "https://b.example"]);
        assert_eq!(s.allowed_origins, ["https://c.example"]);
        assert_eq!(s.trusted_proxies.len(), 1);
        assert!(s.no_turn);
        assert!(!s.insecure_http);

        // A list from the environment or the command line replaces the file's, not adds to it.
        let loaded = load_with(
            &["--trusted-proxy", "192.0.2.0/24"],
            &[("VISAVIS_FRAME_ANCESTORS", "https://d.example,https://e.example")],
            Some(file),
        );
        let s = &loaded.settings;
        assert_eq!(s.frame_ancestors, ["https://d.example", "https://e.example"]);
        assert_eq!(s.trusted_proxies.len(), 1);
        assert_eq!(s.trusted_proxies[0].to_string(), "192.0.2.0/24");
        assert_eq!(source(&loaded, "no-turn"), Source::File);

        let loaded = load_with(&[], &[("VISAVIS_NO_TURN", "false")], Some(file));
        assert!(!loaded.settings.no_turn, "env false over file true");
        let loaded = load_with(&[], &[("VISAVIS_NO_TURN", "true")], None);
        assert!(loaded.settings.no_turn);
    }

    #[test]
    fn the_file_can_come_from_the_environment() {
        let dir = std::env::temp_dir().join(format!("visavis-config-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("v.toml");
        std::fs::write(&path, "room-capacity = 2\n").expect("write");
        let path = path.display().to_string();
        let loaded = load(["visavis"], &|name| {
            (name == "VISAVIS_CONFIG").then(|| OsString::from(&path))
        })
        .expect("loads");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(loaded.settings.room_capacity, 2);
        assert_eq!(loaded.file.as_deref(), Some(Path::new(&path)));
        assert_eq!(
            loaded.settings.config.as_deref(),
            Some(Path::new(&path)),
            "and shows as --config"
        );
    }

    #[test]
    fn every_problem_in_the_file_names_the_file_the_line_and_the_key() {
        let file = "lisen = \"0.0.0.0:8443\"\n\
                    room-capacity = \"16\"\n\
                    mesh-limit = 1\n\
                    no-turn = \"yes\"\n\
                    trusted-proxy = [\"not a range\"]\n\
                    config = \"other.toml\"\n\
                    [turn]\nrealm = \"x\"\n\
                    ";
        let loaded = load_with(&[], &[], Some(file));
        let problems = &loaded.file_problems;
        let file = loaded.file.as_ref().expect("a file").display().to_string();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        for problem in problems {
            assert!(problem.starts_with(&format!("{file}:")), "{problem}");
        }
        assert!(
            problems[0].ends_with(":1: unknown key `lisen` (did you mean `listen`?)"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains(":2: `room-capacity`: expected a number, not a string"),
            "{problems:#?}"
        );
        assert!(
            problems[2].contains(":3: `mesh-limit`: invalid value '1'"),
            "{}",
            problems[2]
        );
        assert!(problems[3].contains(":4: `no-turn`: expected true or false"));
        assert!(problems[4].contains(":5: `trusted-proxy`: invalid value 'not a range'"));
        assert!(problems[5].contains(":6: `config` names the file"));
        assert!(
            problems[6].contains(":7: unknown key `turn`: settings are top-level keys"),
            "{}",
            problems[6]
        );
        // The rest stands: the defaults.
        assert_eq!(loaded.settings.mesh_limit, 6);
        assert_eq!(loaded.settings.room_capacity, 16);
    }

    #[test]
    fn a_file_that_is_missing_or_not_toml_is_a_problem() {
        let loaded = load_with(&["--config", "/nonexistent/visavis.toml"], &[], None);
        assert_eq!(loaded.file_problems.len(), 1);
        assert!(
            loaded.file_problems[0].starts_with("/nonexistent/visavis.toml: cannot read it"),
            "{:?}",
            loaded.file_problems
        );
        let loaded = load_with(&[], &[], Some("listen = \n"));
        assert_eq!(loaded.file_problems.len(), 1);
        assert!(
            loaded.file_problems[0].contains("line 1"),
            "{:?}",
            loaded.file_problems
        );
    }

    #[test]
    fn an_option_may_need_another_from_a_different_place() {
        let loaded = load_with(&["--tls-cert", "c.pem"], &[], Some("tls-key = \"k.pem\"\n"));
        assert_eq!(loaded.settings.tls_key.as_deref(), Some(Path::new("k.pem")));
        let err = try_load(&[], &[], Some("tls-key = \"k.pem\"\n")).expect_err("needs the cert");
        assert_eq!(err.error.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn check_config_takes_the_same_options() {
        let loaded = load_with(
            &[],
            &[("VISAVIS_LISTEN", "127.0.0.1:1")],
            Some("room-capacity = 3\n"),
        );
        assert_eq!(loaded.mode, Mode::Serve);
        let env: BTreeMap<String, OsString> = BTreeMap::new();
        let loaded = load(["visavis", "check-config", "--room-capacity", "5"], &|name| {
            env.get(name).cloned()
        })
        .expect("loads");
        assert_eq!(loaded.mode, Mode::CheckConfig);
        assert_eq!(loaded.settings.room_capacity, 5);
        let err = load(["visavis", "--room-capacity", "5", "check-config"], &|name| {
            env.get(name).cloned()
        })
        .expect_err("options go after the subcommand");
        assert_eq!(err.error.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn the_environment_is_checked_as_flags_are() {
        let err = try_load(
            &[],
            &[("VISAVIS_ROOM_CAPACITY", "0"), ("VISAVIS_NO_TURN", "yes")],
            None,
        )
        .expect_err("bad values");
        assert_eq!(err.error.kind(), ErrorKind::ValueValidation);
        let message = err.error.to_string();
        assert!(
            message.contains("VISAVIS_ROOM_CAPACITY=\"0\": invalid value '0'"),
            "{message}"
        );
        assert!(
            message.contains("VISAVIS_NO_TURN=\"yes\": expected true or false"),
            "{message}"
        );
    }
}
