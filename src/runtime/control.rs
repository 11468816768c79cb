//! The control socket (`server.control-socket`) and its client, `wstund -c SOCKET CMD`.
//!
//! One command per connection: the client writes a line (`reload`, `status`, `drain`,
//! `stop`, `upgrade`), wstund answers `ok` or `error` on the first line, then text, and
//! closes. The loop never waits on a control client: the socket is non-blocking, a
//! command is taken once its line is complete (at most [`MAX_LINE`] bytes), and the
//! answer is small enough for the socket buffer (a client that does not read it loses
//! it). The socket is mode 0600 and owned by the run user: whoever may use it may stop
//! the daemon, like whoever may signal it.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry};
use nix::unistd::{Gid, Uid};
use slab::Slab;

use crate::runtime::listener::{Listener, SocketAccess};
use crate::token;

/// Longest command line taken.
const MAX_LINE: usize = 256;
/// How long the client waits for an answer (an upgrade waits for the new process).
const CLIENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A command from the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Reload,
    Status,
    Drain,
    Stop,
    Upgrade,
    /// `wstund -U` asks for the hand-over channel (answered with its descriptor).
    Handover,
}

impl Command {
    /// The command a line names (pure).
    pub fn parse(line: &str) -> Result<Command, String> {
        match line.trim() {
            "reload" => Ok(Command::Reload),
            "status" => Ok(Command::Status),
            "drain" => Ok(Command::Drain),
            "stop" => Ok(Command::Stop),
            "upgrade" => Ok(Command::Upgrade),
            "handover" => Ok(Command::Handover),
            other => Err(format!("unknown command {other:?} (reload, status, drain, stop, upgrade)")),
        }
    }
}

/// The answer to a command: the first line says which.
pub fn answer(result: &Result<String, String>) -> String {
    match result {
        Ok(text) => format!("ok\n{text}\n"),
        Err(text) => format!("error\n{text}\n"),
    }
}

struct Client {
    stream: UnixStream,
    line: Vec<u8>,
}

/// What a control client's turn gave.
pub enum Turn {
    /// Nothing complete yet.
    Waiting,
    /// A command to carry out; answer with [`ControlSocket::reply`].
    Command(Command),
}

pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    clients: Slab<Client>,
    /// The file belongs to another process now (an upgrade): not removed at exit.
    keep_file: bool,
}

impl ControlSocket {
    /// Binds the socket (a stale socket file is replaced), mode 0600, handed to the
    /// run user and group before it listens.
    pub fn bind(path: &Path, owner: Option<Uid>, group: Option<Gid>) -> io::Result<ControlSocket> {
        let access = SocketAccess { mode: Some(0o600), owner, group };
        match Listener::bind_unix(path, 16, access) {
            Ok(Listener::Unix { sock, path, .. }) => Ok(ControlSocket { listener: sock, path, clients: Slab::new(), keep_file: false }),
            Ok(Listener::Tcp { .. }) => Err(io::Error::other("not a unix socket")),
            Err(e) => Err(io::Error::new(e.err.kind(), e.to_string())),
        }
    }

    pub fn register(&mut self, reg: &Registry) -> io::Result<()> {
        reg.register(&mut self.listener, token::CONTROL, Interest::READABLE)
    }

    /// The path now names another process's socket (after an upgrade).
    pub fn keep_file(&mut self) {
        self.keep_file = true;
    }

    /// The control socket a running wstund handed over (binary upgrade): the same
    /// socket, so the path never stops answering.
    pub fn adopt(fd: std::os::fd::OwnedFd, path: &Path) -> io::Result<ControlSocket> {
        let std_l = std::os::unix::net::UnixListener::from(fd);
        std_l.set_nonblocking(true)?;
        Ok(ControlSocket { listener: UnixListener::from_std(std_l), path: path.to_path_buf(), clients: Slab::new(), keep_file: false })
    }

    /// The listening socket and its path, to hand over.
    pub fn handover_parts(&self) -> (std::os::fd::RawFd, &Path) {
        use std::os::fd::AsRawFd;
        (self.listener.as_raw_fd(), &self.path)
    }

    /// The new process answers on this socket now: this one takes no more clients
    /// (those connected already get their answers) and leaves the file.
    pub fn stop_listening(&mut self, reg: &Registry) {
        let _ = reg.deregister(&mut self.listener);
        self.keep_file = true;
    }

    /// Answers `handover`: `ok` with the channel's other end attached, then closes.
    pub fn reply_with_fd(&mut self, i: usize, fd: std::os::fd::RawFd, reg: &Registry) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let sent = match self.clients.get(i) {
            Some(c) => crate::runtime::transfer::send_with_fd(c.stream.as_raw_fd(), b"ok\nhandover\n", fd),
            None => Err(io::Error::other("the control client is gone")),
        };
        self.close(i, reg);
        sent
    }

    /// Takes every waiting client (beyond [`token::MAX_CONTROL_CLIENTS`] at once, the
    /// extra ones are closed).
    pub fn accept(&mut self, reg: &Registry) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!("control socket accept: {e}");
                    return;
                }
            };
            if self.clients.len() >= token::MAX_CONTROL_CLIENTS {
                let _ = stream.write(answer(&Err("too many control clients at once".into())).as_bytes());
                continue;
            }
            let entry = self.clients.vacant_entry();
            if reg.register(&mut stream, token::control_client_token(entry.key()), Interest::READABLE).is_ok() {
                entry.insert(Client { stream, line: Vec::new() });
            }
        }
    }

    /// Reads what client `i` sent; a complete line is a command.
    pub fn on_client(&mut self, i: usize, reg: &Registry) -> Turn {
        let Some(c) = self.clients.get_mut(i) else { return Turn::Waiting };
        let mut buf = [0u8; MAX_LINE];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => c.line.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(i, reg);
                    return Turn::Waiting;
                }
            }
            if c.line.len() > MAX_LINE || c.line.contains(&b'\n') {
                break;
            }
        }
        let Some(end) = c.line.iter().position(|&b| b == b'\n') else {
            if c.line.len() > MAX_LINE {
                self.reply(i, &Err("command line too long".into()), reg);
            }
            return Turn::Waiting;
        };
        let line = String::from_utf8_lossy(&c.line[..end]).to_string();
        match Command::parse(&line) {
            Ok(cmd) => Turn::Command(cmd),
            Err(e) => {
                self.reply(i, &Err(e), reg);
                Turn::Waiting
            }
        }
    }

    /// Sends the answer to client `i` and closes it.
    pub fn reply(&mut self, i: usize, result: &Result<String, String>, reg: &Registry) {
        if let Some(c) = self.clients.get_mut(i) {
            if let Err(e) = c.stream.write_all(answer(result).as_bytes()) {
                warn!("control socket: the answer could not be sent: {e}");
            }
        }
        self.close(i, reg);
    }

    fn close(&mut self, i: usize, reg: &Registry) {
        if self.clients.contains(i) {
            let mut c = self.clients.remove(i);
            let _ = reg.deregister(&mut c.stream);
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if !self.keep_file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// How a `wstund -c` command went; the command line turns it into the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `ok`: exit 0.
    Done,
    /// `error`, or the daemon could not be reached: exit 1.
    Failed,
    /// No command, or an unknown one: exit 2.
    Usage,
}

/// `wstund -c SOCKET COMMAND`: sends the command, prints the answer (the text on
/// standard output for `ok`, on standard error for `error`).
pub fn client(socket: &str, args: &[String]) -> Outcome {
    let [cmd] = args else {
        eprintln!("wstund: -c SOCKET needs one command: reload, status, drain, stop or upgrade");
        return Outcome::Usage;
    };
    match Command::parse(cmd) {
        Err(e) => {
            eprintln!("wstund: {e}");
            return Outcome::Usage;
        }
        Ok(Command::Handover) => {
            eprintln!("wstund: handover is what wstund -U -f CONF asks; run that with the new binary");
            return Outcome::Usage;
        }
        Ok(_) => {}
    }
    let run = || -> io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(socket)?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match run() {
        Ok(out) => {
            let (head, text) = out.split_once('\n').unwrap_or((out.as_str(), ""));
            match head {
                "ok" => {
                    print!("{text}");
                    Outcome::Done
                }
                "error" => {
                    eprint!("wstund: {cmd} failed: {text}");
                    Outcome::Failed
                }
                _ => {
                    eprintln!("wstund: no answer to {cmd} from {socket}");
                    Outcome::Failed
                }
            }
        }
        Err(e) => {
            eprintln!("wstund: cannot reach {socket}: {e}");
            Outcome::Failed
        }
    }
}

/// A string as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_answers() {
        assert_eq!(Command::parse("reload\r"), Ok(Command::Reload));
        assert_eq!(Command::parse(" status "), Ok(Command::Status));
        assert!(Command::parse("restart").unwrap_err().contains("reload, status"));
        assert_eq!(answer(&Ok("done".into())), "ok\ndone\n");
        assert_eq!(answer(&Err("bad".into())), "error\nbad\n");
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
