//! websocketd's one-line start: `wstund --port 8080 [--bind ADDR] [--staticdir DIR]
//! [--devconsole] [--binary] [--line] -- PROGRAM ARGS...` runs PROGRAM per connection,
//! as the conf this module writes would: the command line is turned into conf text
//! (`conf_text`) and loaded like a file, so `-p` with the same flags prints exactly what
//! runs, and a user can graduate to a file. Pure: no file system except finding PROGRAM
//! on PATH.

use std::path::{Path, PathBuf};

/// The one-line start's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneLine {
    pub port: u16,
    pub bind: String,
    pub staticdir: Option<String>,
    pub devconsole: bool,
    pub binary: bool,
    pub line: bool,
    /// `-p`: print the conf instead of running it.
    pub print: bool,
    /// PROGRAM and its arguments.
    pub command: Vec<String>,
}

/// Whether the arguments ask for a one-line start (they name `--port`).
pub fn wanted(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| a == "--port" || a.starts_with("--port="))
}

/// Parses the one-line form (`args` without the program name). Options take their value
/// as `--opt VALUE` or `--opt=VALUE`; PROGRAM follows `--` or is the first argument that
/// is not an option, as in websocketd.
pub fn parse(args: &[String]) -> Result<OneLine, String> {
    let mut o = OneLine {
        port: 0,
        bind: "0.0.0.0".into(),
        staticdir: None,
        devconsole: false,
        binary: false,
        line: false,
        print: false,
        command: Vec::new(),
    };
    let mut port = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            o.command = args[i + 1..].to_vec();
            break;
        }
        if !a.starts_with('-') {
            o.command = args[i..].to_vec();
            break;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            args.get(i).cloned().ok_or_else(|| format!("{name} needs a value"))
        };
        match name {
            "--port" => port = Some(value()?.parse::<u16>().map_err(|_| format!("{a}: not a port number"))?),
            "--bind" | "--address" => o.bind = value()?,
            "--staticdir" => o.staticdir = Some(value()?),
            "--devconsole" => o.devconsole = true,
            "--binary" => o.binary = true,
            "--line" => o.line = true,
            "-p" => o.print = true,
            _ => return Err(format!("unknown option {a} in a one-line start (--port, --bind, --staticdir, --devconsole, --binary, --line, -p)")),
        }
        i += 1;
    }
    o.port = port.ok_or("--port is required")?;
    if o.command.is_empty() {
        return Err("no PROGRAM given: wstund --port N [options] -- PROGRAM ARGS...".into());
    }
    if o.devconsole && o.staticdir.is_some() {
        return Err("--devconsole and --staticdir cannot be used together (the console is served on /)".into());
    }
    if let Some(bad) = o.command.iter().find(|a| a.is_empty() || a.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\')) {
        return Err(format!("argument {bad:?} cannot be passed: bin-path splits on whitespace and has no quoting"));
    }
    Ok(o)
}

/// PROGRAM as an absolute path: a name without '/' is looked up on PATH, a relative
/// path is taken from the current directory (bin-path programs run in their own
/// directory, so a relative path would name another file there).
pub fn resolve_program(program: &str, path_var: Option<&std::ffi::OsStr>, cwd: &Path) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = Path::new(program);
        return Ok(if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) });
    }
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let p = dir.join(program);
        if p.is_file() {
            return Ok(if p.is_absolute() { p } else { cwd.join(p) });
        }
    }
    Err(format!("{program}: not found on PATH"))
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The equivalent conf, in lighttpd syntax, commented. `program` is the resolved PROGRAM.
pub fn conf_text(o: &OneLine, program: &Path) -> String {
    let mut bin = vec![program.display().to_string()];
    bin.extend(o.command.iter().skip(1).cloned());
    let backend = format!("( ( \"bin-path\" => {}, \"mode\" => \"stdio\" ) )", quote(&bin.join(" ")));
    let mut out = String::from("# wstund's one-line start, as a conf file (wstund -f FILE runs the same).\n");
    out.push_str(&format!("server.bind = {}\nserver.port = {}\n", quote(&o.bind), o.port));
    if o.binary {
        out.push_str("wstunnel.frame-type = \"binary\"\n");
    }
    if o.line {
        out.push_str("# One message per line each way.\nwstunnel.backend-framing = \"line\"\n");
    }
    match &o.staticdir {
        Some(dir) => {
            out.push_str(&format!(
                "# Plain requests get files; WebSocket upgrades, on any path, the program.\n\
                 server.document-root = {}\nindex-file.names = ( \"index.html\" )\n\
                 mimetype.assign = ( \".html\" => \"text/html\", \".js\" => \"text/javascript\", \".css\" => \"text/css\", \
                 \".json\" => \"application/json\", \".png\" => \"image/png\", \".svg\" => \"image/svg+xml\", \"\" => \"application/octet-stream\" )\n\
                 $REQUEST_HEADER[\"Upgrade\"] =~ \"^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$\" {{\n    wstunnel.server = ( \"/\" => {backend} )\n}}\n",
                quote(dir)
            ));
        }
        None => {
            if o.devconsole {
                out.push_str("# A browser's plain GET gets the dev console.\nwstund.devconsole = \"enable\"\n");
            }
            out.push_str(&format!("wstunnel.server = ( \"/\" => {backend} )\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn websocketd_forms_parse() {
        assert!(wanted(&args("--port 8080 -- /bin/cat")));
        assert!(wanted(&args("--port=8080 ./x")));
        assert!(!wanted(&args("-f x.conf")));
        assert!(!wanted(&args("-f x.conf -- --port")));
        let o = parse(&args("--port=8080 --bind 127.0.0.1 --binary --line -- /bin/cat -u")).unwrap();
        assert_eq!((o.port, o.bind.as_str(), o.binary, o.line), (8080, "127.0.0.1", true, true));
        assert_eq!(o.command, ["/bin/cat", "-u"]);
        let o = parse(&args("--port 9 --staticdir=. ./count.sh 10")).unwrap();
        assert_eq!((o.staticdir.as_deref(), o.command.len()), (Some("."), 2));
        assert!(parse(&args("--port 9")).unwrap_err().contains("PROGRAM"));
        assert!(parse(&args("--port x -- a")).is_err());
        assert!(parse(&args("--port 9 --frob -- a")).unwrap_err().contains("unknown option"));
        assert!(parse(&args("--port 9 --devconsole --staticdir . -- a")).is_err());
        assert!(parse(&["--port".into(), "9".into(), "--".into(), "a".into(), "b c".into()]).is_err());
    }

    #[test]
    fn conf_text_is_the_equivalent_conf() {
        let o = parse(&args("--port 8080 --devconsole -- cat -u")).unwrap();
        let t = conf_text(&o, Path::new("/bin/cat"));
        assert!(t.contains("server.port = 8080\n") && t.contains("wstund.devconsole = \"enable\"\n"), "{t}");
        assert!(t.contains("wstunnel.server = ( \"/\" => ( ( \"bin-path\" => \"/bin/cat -u\", \"mode\" => \"stdio\" ) ) )"), "{t}");
        let loaded = crate::conf::load_str("(one-line)", &t).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let o = parse(&args("--port 8080 --staticdir /srv -- /bin/cat")).unwrap();
        let t = conf_text(&o, Path::new("/bin/cat"));
        let loaded = crate::conf::load_str("(one-line)", &t).unwrap();
        assert_eq!(loaded.config.wstunnel.document_root, "/srv");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn programs_are_found_on_path() {
        let cwd = Path::new("/tmp");
        assert_eq!(resolve_program("./x.sh", None, cwd).unwrap(), Path::new("/tmp/./x.sh"));
        assert_eq!(resolve_program("/bin/cat", None, cwd).unwrap(), Path::new("/bin/cat"));
        let path = std::ffi::OsString::from("/nonexistent:/bin:/usr/bin");
        assert!(resolve_program("sh", Some(&path), cwd).unwrap().ends_with("sh"));
        assert!(resolve_program("no-such-program-x", Some(&path), cwd).is_err());
    }
}
