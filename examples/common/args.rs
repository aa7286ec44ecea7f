//! The command line of the examples and benchmark peers: `--name value` options (also
//! `--name=value`) and bare `--switch`es, checked against what the program accepts. An unknown
//! argument, a missing value or a value that does not parse is one line on stderr naming the
//! flag and the value, and exit code 2; `--help` prints the usage and exits 0.

#![allow(dead_code)] // each program uses the parts it needs

use std::fmt::Display;
use std::str::FromStr;

/// Parsed arguments.
pub struct Args {
    prog: String,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// Parses the process's arguments: `options` take a value, `switches` do not. `usage` is
    /// printed by `--help` (after the program's name).
    pub fn parse(options: &[&str], switches: &[&str], usage: &str) -> Args {
        let mut it = std::env::args();
        it.next();
        let prog = prog_name();
        let mut args = Args {
            prog,
            values: Vec::new(),
            switches: Vec::new(),
        };
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                println!("usage: {} {usage}", args.prog);
                std::process::exit(0);
            }
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (a.clone(), None),
            };
            if options.contains(&name.as_str()) {
                let Some(v) = inline.or_else(|| it.next()) else {
                    args.fail(format_args!("{name} needs a value"));
                };
                args.values.push((name, v));
            } else if switches.contains(&name.as_str()) && inline.is_none() {
                args.switches.push(name);
            } else {
                args.fail(format_args!("unknown argument {a:?} (usage: {usage})"));
            }
        }
        args
    }

    /// The value of `name` parsed as `T`, if given; a value that does not parse ends the
    /// program (exit code 2, naming the flag and the value).
    pub fn get<T: FromStr>(&self, name: &str) -> Option<T>
    where
        T::Err: Display,
    {
        let (_, v) = self.values.iter().rev().find(|(n, _)| n == name)?;
        match v.parse() {
            Ok(t) => Some(t),
            Err(e) => self.fail(format_args!("{name} {v:?}: {e}")),
        }
    }

    /// The value of `name`, or `default`.
    pub fn get_or<T: FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: Display,
    {
        self.get(name).unwrap_or(default)
    }

    /// Whether the switch `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// Ends the program with `msg` on stderr and exit code 2.
    pub fn fail(&self, msg: impl Display) -> ! {
        eprintln!("{}: {msg}", self.prog);
        std::process::exit(2)
    }
}

/// Ends `main` with `result`: an error is printed with `Display` (the message a person reads,
/// not `Debug`'s structure) after the program's name, and the exit code is 1.
pub fn report(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", prog_name());
            std::process::ExitCode::FAILURE
        }
    }
}

/// The program's file name (for messages).
fn prog_name() -> String {
    std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "example".into())
}
