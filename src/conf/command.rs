//! `bin-path` command lines: split into argv like a shell splits words (quotes and
//! backslashes, no expansions), and argv joined back into such a line. Here in `conf`
//! because the conf checks a bin-path when it is loaded; `process` runs it.

/// A `bin-path` that cannot be split: what is wrong, at which character (0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    pub at: usize,
    pub msg: &'static str,
}

/// Splits a command line into argv with a shell's quotes, without any of the shell's
/// expansions: words are separated by unquoted whitespace; `'...'` keeps everything
/// inside literally; `"..."` too, except that a backslash there escapes `"` and `\`
/// (before any other character it stays). Outside quotes a backslash is an ordinary
/// character, as lighttpd has it (`sed s/.*/\U&/` must keep its backslash), so a
/// command line without quotes splits on whitespace exactly as lighttpd splits it.
/// `$`, `*`, `|`, `>`, `~` and the like mean nothing.
pub fn split_command(s: &str) -> Result<Vec<String>, SplitError> {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single(usize),
        Double(usize),
    }
    let mut argv = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut q = Q::None;
    let mut chars = s.chars().enumerate().peekable();
    while let Some((i, c)) = chars.next() {
        match (&q, c) {
            (Q::Single(_), '\'') | (Q::Double(_), '"') => q = Q::None,
            (Q::Single(_), c) => word.push(c),
            (Q::Double(_), '\\') => match chars.peek() {
                Some(&(_, n @ ('"' | '\\'))) => {
                    word.push(n);
                    chars.next();
                }
                _ => word.push('\\'),
            },
            (Q::Double(_), c) => word.push(c),
            (Q::None, '\'') => {
                q = Q::Single(i);
                in_word = true;
            }
            (Q::None, '"') => {
                q = Q::Double(i);
                in_word = true;
            }
            (Q::None, c) if c.is_whitespace() => {
                if in_word {
                    argv.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (Q::None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    match q {
        Q::Single(at) => return Err(SplitError { at, msg: "unterminated ' quote" }),
        Q::Double(at) => return Err(SplitError { at, msg: "unterminated \" quote" }),
        Q::None => {}
    }
    if in_word {
        argv.push(word);
    }
    Ok(argv)
}

/// Quotes `argv` so that [`split_command`] gives it back (how a bin-path given as an
/// array is kept, and printed by `-p`).
pub fn join_command(argv: &[String]) -> String {
    let quote = |a: &String| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.,:=+@%".contains(c));
        if plain {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', "'\"'\"'"))
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_command_lines_and_the_argv_they_give() {
        let cases: &[(&str, &[&str])] = &[
            ("/bin/echo a  b", &["/bin/echo", "a", "b"]),
            ("python3 -c 'import pty; pty.spawn(\"/bin/sh\")'", &["python3", "-c", "import pty; pty.spawn(\"/bin/sh\")"]),
            ("sh -c \"echo \\\"hi\\\" \\\\ \\$HOME\"", &["sh", "-c", "echo \"hi\" \\ \\$HOME"]),
            ("a\\ b c", &["a\\", "b", "c"]),
            ("/bin/sed -u s/.*/\\U&/", &["/bin/sed", "-u", "s/.*/\\U&/"]),
            ("'' x", &["", "x"]),
            ("pre'fix'\"ed\"", &["prefixed"]),
            ("\"it's\"", &["it's"]),
            ("'it'\"'\"'s'", &["it's"]),
            ("$HOME *.txt | >out", &["$HOME", "*.txt", "|", ">out"]),
            ("\tx\ny ", &["x", "y"]),
        ];
        for (line, want) in cases {
            assert_eq!(split_command(line).unwrap(), want.to_vec(), "{line}");
            let owned: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(split_command(&join_command(&owned)).unwrap(), owned, "join of {want:?}");
        }
        assert_eq!(split_command("a 'b"), Err(SplitError { at: 2, msg: "unterminated ' quote" }));
        assert_eq!(split_command("a \"b"), Err(SplitError { at: 2, msg: "unterminated \" quote" }));
    }

}
