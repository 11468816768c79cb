//! The typed, validated configuration the daemon runs on, and every default.
//!
//! All defaults live here as `DEFAULT_*` constants so the man page, the
//! directive table and `-p` output can be checked against one source.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;


// ---- server.* -------------------------------------------------------------
pub const DEFAULT_BIND: &str = "0.0.0.0";
pub const DEFAULT_PORT: u16 = 80;
pub const DEFAULT_MAX_READ_IDLE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_WRITE_IDLE: Duration = Duration::from_secs(360);
/// Name and version, as lighttpd sends `lighttpd/1.4.x`.
pub const DEFAULT_TAG: &str = concat!("wstund/", env!("CARGO_PKG_VERSION"));
pub const DEFAULT_MAX_WORKER: u32 = 0;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
/// lighttpd's default since 1.4.65 (measured with 1.4.69: SIGINT with an open
/// mod_wstunnel tunnel exits after 8 s).
pub const DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);
pub const DEFAULT_ERRORLOG_USE_SYSLOG: bool = false;

// ---- wstunnel.* -----------------------------------------------------------
pub const DEFAULT_FRAME_TYPE: FrameType = FrameType::Text;
pub const DEFAULT_PING_INTERVAL: u32 = 0;
pub const DEFAULT_DEBUG: u32 = 0;
pub const DEFAULT_BALANCE: Balance = Balance::Fair;
pub const DEFAULT_MAX_FRAME_SIZE: usize = 0;
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 0;
/// The limit that applies when `wstunnel.max-message-size` is 0 but a
/// message must be buffered whole (e.g. for compression or `framed` backends).
pub const BUFFERED_MESSAGE_SIZE_LIMIT: usize = 1 << 20;
pub const DEFAULT_MAX_BACKEND_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
pub const DEFAULT_AUTO_FRAGMENT_SIZE: usize = 0;
pub const DEFAULT_VALIDATE_UTF8: bool = true;
pub const DEFAULT_REQUIRE_MASKED_CLIENT_FRAMES: bool = true;
pub const DEFAULT_APPLY_MASK: bool = true;
pub const DEFAULT_MASK_SERVER_FRAMES: bool = false;
pub const DEFAULT_FAIL_BY_DROP: bool = false;
pub const DEFAULT_ECHO_CLOSE_CODEREASON: bool = false;
pub const DEFAULT_OPEN_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(10_000);
pub const DEFAULT_CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(5_000);
pub const DEFAULT_TCP_NODELAY: bool = true;
pub const DEFAULT_PING_TIMEOUT: u32 = 0;
/// Ping a silent client at half of max-read-idle (a deliberate difference from lighttpd).
pub const DEFAULT_IDLE_PING: bool = true;
pub const DEFAULT_PING_SIZE: u32 = 4;
pub const DEFAULT_VERSIONS: &[u32] = &[13];
pub const DEFAULT_SUBPROTOCOLS: &[&str] = &["binary", "base64"];
pub const DEFAULT_REQUIRE_SUBPROTOCOL: bool = false;
pub const DEFAULT_COMPRESSION: Compression = Compression::None;
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;
pub const DEFAULT_COMPRESSION_MIN_SIZE: usize = 64;
pub const DEFAULT_BACKEND_FRAMING: BackendFraming = BackendFraming::Stream;
pub const DEFAULT_LINE_NEWLINE: LineNewline = LineNewline::IfMissing;
/// Closing is the default: replacing changes what the backend sent without anyone
/// asking, and switching to binary frames surprises a client that expects text; a
/// close with a precise reason is what RFC 6455 asks of an endpoint receiving invalid
/// text, and names the setting to change.
pub const DEFAULT_TEXT_INVALID_UTF8: InvalidUtf8 = InvalidUtf8::Close;
pub const DEFAULT_BACKEND_CHARSET: Charset = Charset::Utf8;
/// Above the 40-200 ms a line split by Nagle and delayed ACKs can wait for its second
/// half, so such a line is not cut in two; below what a person notices before a prompt.
pub const DEFAULT_LINE_FLUSH: Duration = Duration::from_millis(250);

// ---- wstunnel.server backend options --------------------------------------
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
pub const DEFAULT_DISABLE_TIME: Duration = Duration::from_secs(1);
pub const DEFAULT_MIN_PROCS: u32 = 4;
pub const DEFAULT_MAX_PROCS_POOL: u32 = 4;
pub const DEFAULT_MAX_PROCS_STDIO: u32 = 1024;
pub const DEFAULT_MAX_LOAD_PER_PROC: u32 = 1;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// SIGTERM (the same number on every Linux architecture).
pub const DEFAULT_KILL_SIGNAL: i32 = 15;
pub const DEFAULT_BACKEND_LISTEN_BACKLOG: u32 = 1024;
pub const DEFAULT_BACKEND_MODE: BackendMode = BackendMode::Socket;
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_WEIGHT: u32 = 1;
/// Active health checks are opt-in: 0 = none.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::ZERO;
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_RISE: u32 = 2;
pub const DEFAULT_FALL: u32 = 3;
/// Backend host names are looked up again every minute.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(60);
/// Host used when a spawned backend (`bin-path`) gives only a `port`.
pub const DEFAULT_SPAWN_HOST: &str = "127.0.0.1";

/// lighttpd's default facility.
pub const DEFAULT_SYSLOG_FACILITY: &str = "daemon";
/// LOG_INFO, lighttpd's default `accesslog.syslog-level`.
pub const DEFAULT_ACCESSLOG_SYSLOG_LEVEL: u32 = 6;

/// An `accesslog.format` string, checked field by field when the conf loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessFormat(pub String);

/// `server.defer-accept`, as lighttpd reads it: "enable"/"disable", or a number where
/// any non-zero value enables TCP_DEFER_ACCEPT (lighttpd sets it to 1 second then).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeferAccept(pub bool);

/// The result of loading a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    pub bind: String,
    pub port: u16,
    pub max_read_idle: Duration,
    pub max_write_idle: Duration,
    /// Unset: as many as the descriptor limit allows (`runtime/limits.rs`).
    pub max_connections: Option<u32>,
    pub max_fds: Option<u32>,
    pub max_worker: u32,
    pub listen_backlog: u32,
    /// TCP_DEFER_ACCEPT on the TCP listeners: a client is accepted once it has sent
    /// something (or after the kernel's 1 s), and its request is read at once.
    pub defer_accept: DeferAccept,
    pub errorlog: Option<PathBuf>,
    pub errorlog_use_syslog: bool,
    /// A name from `logs::syslog::FACILITIES` (checked by the directive's allowed list).
    pub syslog_facility: String,
    /// A file, or `|command`; unset keeps access lines in the error log.
    pub accesslog_filename: Option<PathBuf>,
    pub accesslog_format: AccessFormat,
    pub accesslog_use_syslog: bool,
    pub accesslog_syslog_level: u32,
    pub pid_file: Option<PathBuf>,
    pub username: Option<String>,
    pub groupname: Option<String>,
    pub chroot: Option<PathBuf>,
    /// Mode of unix-domain listening sockets (lighttpd's `server.socket-perms`).
    pub socket_perms: Option<FileMode>,
    /// Group owning unix-domain listening sockets (a wstund extension).
    pub socket_group: Option<String>,
    pub tag: String,
    pub modules: Vec<String>,
    /// How long open tunnels may run on after SIGINT (and retiring pools after a
    /// reload); zero: no limit.
    pub graceful_shutdown_timeout: Duration,
    /// `server.control-socket` (a wstund extension): commands from `wstund -c`.
    pub control_socket: Option<PathBuf>,
    /// `auth.cache`: how long verified credentials are remembered.
    pub auth_cache: AuthCache,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            bind: DEFAULT_BIND.to_string(),
            port: DEFAULT_PORT,
            max_read_idle: DEFAULT_MAX_READ_IDLE,
            max_write_idle: DEFAULT_MAX_WRITE_IDLE,
            max_connections: None,
            max_fds: None,
            max_worker: DEFAULT_MAX_WORKER,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            defer_accept: DeferAccept(false),
            errorlog: None,
            errorlog_use_syslog: DEFAULT_ERRORLOG_USE_SYSLOG,
            syslog_facility: DEFAULT_SYSLOG_FACILITY.to_string(),
            accesslog_filename: None,
            accesslog_format: AccessFormat(crate::logs::format::DEFAULT_FORMAT.to_string()),
            accesslog_use_syslog: false,
            accesslog_syslog_level: DEFAULT_ACCESSLOG_SYSLOG_LEVEL,
            pid_file: None,
            username: None,
            groupname: None,
            chroot: None,
            socket_perms: None,
            socket_group: None,
            tag: DEFAULT_TAG.to_string(),
            modules: Vec::new(),
            graceful_shutdown_timeout: DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT,
            control_socket: None,
            auth_cache: DEFAULT_AUTH_CACHE,
        }
    }
}

/// A file mode given in octal, as lighttpd's `server.socket-perms` takes it ("0660").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMode(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub struct WsSettings {
    pub servers: ServerMap,
    pub frame_type: FrameType,
    /// Empty = any origin, and a missing Origin header is allowed.
    pub origins: Vec<String>,
    /// `url.access-deny`: suffixes of the decoded URL path answered with 403.
    pub access_deny: Vec<String>,
    /// `url.access-allow`: when not empty, only paths ending in one of these pass.
    pub access_allow: Vec<String>,
    /// `wstund.metrics-url`: the Prometheus page's path; empty: none.
    pub metrics_url: String,
    /// `wstund.health-url`: the health page's path; empty: none.
    pub health_url: String,
    /// `wstund.health-routes`: route keys that must have a backend up for a 200.
    pub health_routes: Vec<String>,
    /// `wstund.devconsole`: a plain GET on a route gets the dev console page.
    pub devconsole: bool,
    /// mod_status: `status.status-url`, `status.config-url`, `status.statistics-url`.
    pub status_url: String,
    pub status_config_url: String,
    pub status_statistics_url: String,
    /// mod_staticfile: `server.document-root` (empty: no files), `server.follow-symlink`,
    /// `index-file.names`, `mimetype.assign`, `static-file.exclude-extensions`.
    pub document_root: String,
    pub follow_symlink: bool,
    pub index_file_names: Vec<String>,
    pub mimetype_assign: Vec<(String, String)>,
    pub static_file_exclude: Vec<String>,
    /// Seconds; 0 = no pings.
    pub ping_interval: u32,
    pub debug: u32,
    pub balance: Balance,
    /// `(from, to)`: a path ending in `from` uses the route of extension `to`.
    pub map_extensions: Vec<(String, String)>,
    /// Bytes; 0 = unlimited.
    pub max_frame_size: usize,
    /// Bytes; 0 = unlimited (see [`BUFFERED_MESSAGE_SIZE_LIMIT`]).
    pub max_message_size: usize,
    pub max_backend_message_size: usize,
    /// Bytes; 0 = never split outgoing messages.
    pub auto_fragment_size: usize,
    pub validate_utf8: bool,
    pub require_masked_client_frames: bool,
    pub apply_mask: bool,
    pub mask_server_frames: bool,
    pub fail_by_drop: bool,
    pub echo_close_codereason: bool,
    pub open_handshake_timeout: Duration,
    pub close_handshake_timeout: Duration,
    pub tcp_nodelay: bool,
    /// Seconds; 0 = do not wait for pongs.
    pub ping_timeout: u32,
    /// Payload bytes of each ping, 4..=125.
    pub ping_size: u32,
    /// With no ping-interval: ping a client silent for half of max-read-idle.
    pub idle_ping: bool,
    pub versions: Vec<u32>,
    pub subprotocols: Vec<String>,
    pub require_subprotocol: bool,
    pub compression: Compression,
    pub compression_level: u32,
    pub compression_min_size: usize,
    pub backend_framing: BackendFraming,
    /// `line` framing: whether a client message already ending in `\n` gets another.
    pub line_newline: LineNewline,
    /// `line` framing: a partial backend line this old goes out as a message; zero =
    /// never (it waits for its newline).
    pub line_flush: Duration,
    /// What backend output that is not UTF-8 does on a text route.
    pub text_invalid_utf8: InvalidUtf8,
    /// The backend's character set on a text route (transcoded to and from UTF-8).
    pub backend_charset: Charset,
    /// mod_extforward: the proxies trusted to name the client (`extforward.forwarder`).
    pub extforward_forwarder: super::extforward::Forwarders,
    /// Headers read for the client's address; empty: lighttpd's default
    /// (X-Forwarded-For, Forwarded-For), or none when hap-PROXY is on.
    pub extforward_headers: Vec<String>,
    /// `extforward.params` as written; only "disable" values pass the conf check.
    pub extforward_params: Vec<(String, String)>,
    /// A trusted forwarder's connection starts with a PROXY protocol header.
    pub extforward_hap_proxy: bool,
    /// Refused when enabled (conf/extforward.rs); kept so -p prints it.
    pub extforward_hap_proxy_ssl_client_verify: bool,
    /// mod_evasive: more connections than this from one client address get the refusal;
    /// 0 = no limit.
    pub evasive_max_conns_per_ip: u32,
    /// Do not log the refusals.
    pub evasive_silent: bool,
    /// Non-empty: the refusal is a 302 to this URL instead of 403/429.
    pub evasive_location: String,
    /// The refusal's status: 403 (lighttpd's) or 429.
    pub evasive_http_status: u16,
    /// IPv6 clients are counted per network of this prefix length.
    pub evasive_ipv6_prefix: u32,
    /// mod_auth: `auth.backend`, its userfiles (empty: unset) and `auth.require`.
    pub auth_backend: AuthBackend,
    pub auth_htpasswd_userfile: String,
    pub auth_plain_userfile: String,
    pub auth_require: AuthRequire,
    /// mod_setenv: headers on the 101 and the responses after mod_auth; variables for
    /// stdio/pty programs (and, from the global scope, pool processes).
    pub setenv_add_response_header: HeaderList,
    pub setenv_set_response_header: HeaderList,
    pub setenv_add_environment: EnvList,
    pub setenv_set_environment: EnvList,
    /// Request headers a stdio/pty program sees (as HTTP_*); nothing else reads them.
    pub setenv_add_request_header: HeaderList,
    pub setenv_set_request_header: HeaderList,
}

impl Default for WsSettings {
    fn default() -> WsSettings {
        WsSettings {
            servers: ServerMap::default(),
            frame_type: DEFAULT_FRAME_TYPE,
            origins: Vec::new(),
            access_deny: Vec::new(),
            access_allow: Vec::new(),
            metrics_url: String::new(),
            health_url: String::new(),
            health_routes: Vec::new(),
            devconsole: false,
            status_url: String::new(),
            status_config_url: String::new(),
            status_statistics_url: String::new(),
            document_root: String::new(),
            follow_symlink: true,
            index_file_names: Vec::new(),
            mimetype_assign: Vec::new(),
            static_file_exclude: Vec::new(),
            ping_interval: DEFAULT_PING_INTERVAL,
            debug: DEFAULT_DEBUG,
            balance: DEFAULT_BALANCE,
            map_extensions: Vec::new(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_backend_message_size: DEFAULT_MAX_BACKEND_MESSAGE_SIZE,
            auto_fragment_size: DEFAULT_AUTO_FRAGMENT_SIZE,
            validate_utf8: DEFAULT_VALIDATE_UTF8,
            require_masked_client_frames: DEFAULT_REQUIRE_MASKED_CLIENT_FRAMES,
            apply_mask: DEFAULT_APPLY_MASK,
            mask_server_frames: DEFAULT_MASK_SERVER_FRAMES,
            fail_by_drop: DEFAULT_FAIL_BY_DROP,
            echo_close_codereason: DEFAULT_ECHO_CLOSE_CODEREASON,
            open_handshake_timeout: DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
            close_handshake_timeout: DEFAULT_CLOSE_HANDSHAKE_TIMEOUT,
            tcp_nodelay: DEFAULT_TCP_NODELAY,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            idle_ping: DEFAULT_IDLE_PING,
            ping_size: DEFAULT_PING_SIZE,
            versions: DEFAULT_VERSIONS.to_vec(),
            subprotocols: DEFAULT_SUBPROTOCOLS.iter().map(|s| s.to_string()).collect(),
            require_subprotocol: DEFAULT_REQUIRE_SUBPROTOCOL,
            compression: DEFAULT_COMPRESSION,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            compression_min_size: DEFAULT_COMPRESSION_MIN_SIZE,
            backend_framing: DEFAULT_BACKEND_FRAMING,
            line_newline: DEFAULT_LINE_NEWLINE,
            line_flush: DEFAULT_LINE_FLUSH,
            text_invalid_utf8: DEFAULT_TEXT_INVALID_UTF8,
            backend_charset: DEFAULT_BACKEND_CHARSET,
            extforward_forwarder: Default::default(),
            extforward_headers: Vec::new(),
            extforward_params: Vec::new(),
            extforward_hap_proxy: false,
            extforward_hap_proxy_ssl_client_verify: false,
            evasive_max_conns_per_ip: 0,
            evasive_silent: false,
            evasive_location: String::new(),
            evasive_http_status: 403,
            evasive_ipv6_prefix: 64,
            auth_backend: AuthBackend::None,
            auth_htpasswd_userfile: String::new(),
            auth_plain_userfile: String::new(),
            auth_require: AuthRequire::default(),
            setenv_add_response_header: HeaderList::default(),
            setenv_set_response_header: HeaderList::default(),
            setenv_add_environment: EnvList::default(),
            setenv_set_environment: EnvList::default(),
            setenv_add_request_header: HeaderList::default(),
            setenv_set_request_header: HeaderList::default(),
        }
    }
}

impl WsSettings {
    /// Keeps the copy of `map_extensions` inside `servers` in step; called after
    /// every load and merge so `ServerMap::find` sees the effective mapping.
    pub(crate) fn sync(&mut self) {
        if self.servers.map_extensions != self.map_extensions {
            self.servers.map_extensions = self.map_extensions.clone();
        }
    }
}

// ---- mod_auth (typed in conf/auth.rs) ----

/// `auth.backend`: where users and passwords come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthBackend {
    /// Unset: an `auth.require` rule that applies answers 500 (and the load refuses a
    /// conf where no scope sets a backend).
    #[default]
    None,
    Htpasswd,
    Plain,
}

/// Who a rule lets in, once the password matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Require {
    ValidUser,
    /// `user=a|user=b`.
    Users(Vec<String>),
}

impl Require {
    pub fn allows(&self, user: &str) -> bool {
        match self {
            Require::ValidUser => true,
            Require::Users(us) => us.iter().any(|u| u == user),
        }
    }

    /// The `require` field as written in a conf.
    pub fn to_conf(&self) -> String {
        match self {
            Require::ValidUser => "valid-user".to_string(),
            Require::Users(us) => us.iter().map(|u| format!("user={u}")).collect::<Vec<_>>().join("|"),
        }
    }
}

/// One `auth.require` entry: a URL-path prefix and what it asks for (method basic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRule {
    pub prefix: String,
    pub realm: String,
    pub require: Require,
}

/// `auth.require`, in conf order: the first rule whose key is a prefix of the URL path
/// applies (lighttpd's `array_match_key_prefix`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthRequire(pub Vec<AuthRule>);

impl AuthRequire {
    pub fn find(&self, url_path: &str) -> Option<&AuthRule> {
        self.0.iter().find(|r| url_path.starts_with(r.prefix.as_str()))
    }
}

/// `auth.cache = ( "max-age" => "N" )`: how long verified credentials are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthCache {
    /// Zero: no cache, every request runs the hash.
    pub max_age: Duration,
}

/// wstund caches by default (lighttpd does not): a reconnecting WebSocket client would
/// otherwise cost a full bcrypt run on the single loop each time.
pub const DEFAULT_AUTH_CACHE: AuthCache = AuthCache { max_age: Duration::from_secs(60) };

// ---- mod_setenv (typed in conf/setenv.rs) ----

/// `setenv.add-response-header` / `setenv.set-response-header`: `( "Name" => "value" )`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HeaderList(pub Vec<(String, String)>);

/// `setenv.add-environment` / `setenv.set-environment`: `( "NAME" => "value" )`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EnvList(pub Vec<(String, String)>);

/// Generates the string table of a configuration enum in one place.
macro_rules! conf_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }
        impl $name {
            pub const VALUES: &'static [(&'static str, $name)] = &[$(($text, $name::$variant)),*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

conf_enum!(
    /// Opcode of the frames wstund sends to the client.
    FrameType { Text = "text", Binary = "binary" }
);
conf_enum!(
    /// lighttpd's gw_backend balancing algorithms.
    Balance { Fair = "fair", LeastConnection = "least-connection", RoundRobin = "round-robin", Hash = "hash", Sticky = "sticky" }
);
conf_enum!(
    Compression { None = "", PermessageDeflate = "permessage-deflate" }
);
conf_enum!(
    /// How message boundaries are carried on the backend byte stream.
    BackendFraming { Stream = "stream", Line = "line", Framed = "framed" }
);
conf_enum!(
    /// `line` framing: a client message gets a `\n` appended only if it does not end
    /// in one (`if-missing`, what line clients such as websocat expect), or always.
    LineNewline { IfMissing = "if-missing", Always = "always" }
);
conf_enum!(
    /// Backend output that is not UTF-8 on a text route: close the tunnel (1011),
    /// replace each bad sequence with U+FFFD (the WHATWG decoder's rule), or send that
    /// message as a binary frame.
    InvalidUtf8 { Close = "close", Replace = "replace", Binary = "binary" }
);
conf_enum!(
    /// The character set of a text route's backend: UTF-8 (no transcoding) or
    /// ISO-8859-1, each byte one character U+0000..U+00FF.
    Charset { Utf8 = "utf-8", Latin1 = "latin1" }
);
conf_enum!(
    /// `socket`: connect to (or spawn a pool listening on) host:port/socket;
    /// `stdio`: one program per connection talking on stdin/stdout;
    /// `pty`: one program per connection on a pseudo-terminal.
    BackendMode { Socket = "socket", Stdio = "stdio", Pty = "pty" }
);

impl BackendMode {
    /// One program per connection (`stdio` or `pty`), not a pool or a socket.
    pub fn is_per_connection(self) -> bool {
        matches!(self, BackendMode::Stdio | BackendMode::Pty)
    }
}

/// `wstunnel.server`: routes in declaration order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServerMap {
    pub routes: Vec<Route>,
    /// Copy of `wstunnel.map-extensions`, kept in step by the loader.
    pub map_extensions: Vec<(String, String)>,
}

impl ServerMap {
    /// The route for a request path (query string already removed).
    ///
    /// Keys starting with `/` are URL-path prefixes and win over everything
    /// else (longest first). Other keys are suffixes such as `.ws`, longest
    /// first, then `wstunnel.map-extensions`; the key `""` matches every path
    /// and is tried last. Ties go to the key declared first.
    pub fn find(&self, url_path: &str) -> Option<&Route> {
        let prefix = self
            .routes
            .iter()
            .filter(|r| r.key.starts_with('/') && url_path.starts_with(r.key.as_str()))
            .fold(None::<&Route>, |best, r| match best {
                Some(b) if b.key.len() >= r.key.len() => Some(b),
                _ => Some(r),
            });
        if prefix.is_some() {
            return prefix;
        }
        let suffix = self
            .routes
            .iter()
            .filter(|r| !r.key.starts_with('/') && !r.key.is_empty() && url_path.ends_with(r.key.as_str()))
            .fold(None::<&Route>, |best, r| match best {
                Some(b) if b.key.len() >= r.key.len() => Some(b),
                _ => Some(r),
            });
        if suffix.is_some() {
            return suffix;
        }
        let mapped = self
            .map_extensions
            .iter()
            .filter(|(from, _)| !from.is_empty() && url_path.ends_with(from.as_str()))
            .fold(None::<&(String, String)>, |best, m| match best {
                Some(b) if b.0.len() >= m.0.len() => Some(b),
                _ => Some(m),
            });
        if let Some((_, to)) = mapped {
            if let Some(r) = self.routes.iter().find(|r| r.key == *to) {
                return Some(r);
            }
        }
        self.routes.iter().find(|r| r.key.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub key: String,
    pub backends: Vec<Arc<BackendSpec>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendSpec {
    /// The label in `( "label" => ( ... ) )`, if one was given.
    pub name: Option<String>,
    pub addr: BackendAddr,
    pub connect_timeout: Duration,
    pub disable_time: Duration,
    pub bin_path: Option<String>,
    pub bin_environment: Vec<(String, String)>,
    pub bin_copy_environment: Option<Vec<String>>,
    /// Working directory of a per-connection program; `None`: the directory of its
    /// bin-path (stdio) or the run user's home (pty).
    pub bin_cwd: Option<PathBuf>,
    pub min_procs: u32,
    /// `None`: [`DEFAULT_MAX_PROCS_POOL`] for pools, [`DEFAULT_MAX_PROCS_STDIO`] for stdio.
    pub max_procs: Option<u32>,
    pub max_load_per_proc: u32,
    pub idle_timeout: Duration,
    pub kill_signal: i32,
    pub listen_backlog: u32,
    pub mode: BackendMode,
    pub close_timeout: Duration,
    pub weight: u32,
    /// Seconds between active health probes; zero = no probes.
    pub check_interval: Duration,
    pub check_timeout: Duration,
    /// Raw (escapes decoded by the health module): written after connecting.
    pub check_send: String,
    /// The reply must contain this; empty = connecting is enough.
    pub check_expect: String,
    pub rise: u32,
    pub fall: u32,
    /// How often a `host` name is looked up again; zero = only at start.
    pub resolve_interval: Duration,
    /// `"tls" => "enable"`: TLS to this backend.
    pub tls: Option<super::tls_settings::BackendTls>,
    /// `"token-file"`: the address is looked up per request (websockify's TokenFile);
    /// `addr` is then `BackendAddr::None` until the lookup fills it in.
    pub token: Option<TokenSpec>,
    /// Not a directive: under `server.max-worker`, the first pool slot this worker owns
    /// (`runtime/workers.rs`), so workers bind different `socket-N` / `port+N`.
    pub slot_offset: u32,
    /// `"proxy-protocol" => "v1" | "v2"`: the PROXY header version sent first.
    pub proxy_protocol: Option<u8>,
}

/// Where a token-routed backend finds the request's token and the file to look it up in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// A websockify token file or a directory of them.
    pub file: PathBuf,
    pub from: TokenFrom,
    /// The query parameter (`"token-from" => "query"`); websockify's is `token`.
    pub param: String,
}

/// `"token-from"`: which part of the request carries the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFrom {
    /// `?token=...` (websockify's default), the parameter named by `token-param`.
    Query,
    /// The path segment right after the route key: `/vnc/TOKEN`.
    Path,
    /// The Host header without its port (websockify's `--host-token`).
    Host,
}

/// `token-param`'s default: websockify's query parameter.
pub const DEFAULT_TOKEN_PARAM: &str = "token";

impl BackendSpec {
    /// A backend at `addr` with every option at its default.
    pub fn new(addr: BackendAddr) -> BackendSpec {
        BackendSpec {
            name: None,
            addr,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            disable_time: DEFAULT_DISABLE_TIME,
            bin_path: None,
            bin_environment: Vec::new(),
            bin_copy_environment: None,
            bin_cwd: None,
            min_procs: DEFAULT_MIN_PROCS,
            max_procs: None,
            max_load_per_proc: DEFAULT_MAX_LOAD_PER_PROC,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            kill_signal: DEFAULT_KILL_SIGNAL,
            listen_backlog: DEFAULT_BACKEND_LISTEN_BACKLOG,
            mode: DEFAULT_BACKEND_MODE,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            weight: DEFAULT_WEIGHT,
            check_interval: DEFAULT_CHECK_INTERVAL,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            check_send: String::new(),
            check_expect: String::new(),
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            tls: None,
            token: None,
            slot_offset: 0,
            proxy_protocol: None,
        }
    }

    /// `max-procs` with its mode-dependent default applied.
    pub fn effective_max_procs(&self) -> u32 {
        self.max_procs.unwrap_or(match self.mode {
            BackendMode::Socket => DEFAULT_MAX_PROCS_POOL,
            BackendMode::Stdio | BackendMode::Pty => DEFAULT_MAX_PROCS_STDIO,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
    /// A stdio program without a socket.
    None,
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp { host, port } if host.contains(':') => write!(f, "[{}]:{}", host, port),
            BackendAddr::Tcp { host, port } => write!(f, "{}:{}", host, port),
            BackendAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BackendAddr::None => f.write_str("stdio"),
        }
    }
}

/// A socket to listen on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListenSpec {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The canonical form `$SERVER["socket"]` conditions are compared with: pass
/// `spec.to_string()` of the configured listener as `RequestFacts::server_socket`.
impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenSpec::Tcp(a) => write!(f, "{}", a),
            ListenSpec::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What conditionals may look at for one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// Path without the query string.
    pub url_path: &'a str,
    /// Query string without the `?`.
    pub query: &'a str,
    pub host: Option<&'a str>,
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    pub remote_ip: Option<IpAddr>,
    pub headers: &'a [(&'a str, &'a str)],
    /// `ListenSpec::to_string()` of the listener that accepted the connection.
    pub server_socket: &'a str,
    /// `$HTTP["remote-user"]`: the user basic auth verified, else the one a verified
    /// client certificate names (`ssl.verifyclient.username`).
    pub remote_user: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// First header of that name (case-insensitive), as lighttpd conditions see it.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(keys: &[&str], ext: &[(&str, &str)]) -> ServerMap {
        ServerMap {
            routes: keys.iter().map(|k| Route { key: k.to_string(), backends: Vec::new() }).collect(),
            map_extensions: ext.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        }
    }

    #[test]
    fn find_table() {
        let cases: Vec<(ServerMap, &str, Option<&str>)> = vec![
            (map(&["/ws/", "/ws/chat/"], &[]), "/ws/chat/room", Some("/ws/chat/")),
            (map(&["/ws/chat/", "/ws/"], &[]), "/ws/x", Some("/ws/")),
            (map(&["/ws/"], &[]), "/other", None),
            (map(&[".ws"], &[]), "/a/b.ws", Some(".ws")),
            (map(&[".ws", "chat.ws"], &[]), "/a/chat.ws", Some("chat.ws")),
            (map(&[""], &[]), "/anything", Some("")),
            (map(&["", "/ws"], &[]), "/ws", Some("/ws")),
            (map(&["", ".ws"], &[]), "/x.ws", Some(".ws")),
            (map(&["", ".ws"], &[]), "/x.html", Some("")),
            (map(&[".ws"], &[(".sock", ".ws")]), "/y.sock", Some(".ws")),
            (map(&[".ws"], &[(".sock", ".missing")]), "/y.sock", None),
            (map(&["/a", ".ws"], &[]), "/a/b.ws", Some("/a")),
            (map(&[], &[]), "/", None),
        ];
        for (m, path, want) in cases {
            assert_eq!(m.find(path).map(|r| r.key.as_str()), want, "path {} in {:?}", path, m);
        }
    }

    #[test]
    fn displays() {
        assert_eq!(BackendAddr::Tcp { host: "127.0.0.1".into(), port: 9001 }.to_string(), "127.0.0.1:9001");
        assert_eq!(BackendAddr::Tcp { host: "::1".into(), port: 9 }.to_string(), "[::1]:9");
        assert_eq!(BackendAddr::Unix("/run/app.sock".into()).to_string(), "unix:/run/app.sock");
        assert_eq!(ListenSpec::Tcp("[::1]:80".parse().unwrap()).to_string(), "[::1]:80");
        assert_eq!(ListenSpec::Unix("/run/x.sock".into()).to_string(), "/run/x.sock");
    }

    #[test]
    fn max_procs_default_depends_on_mode() {
        let mut b = BackendSpec::new(BackendAddr::None);
        assert_eq!(b.effective_max_procs(), DEFAULT_MAX_PROCS_POOL);
        b.mode = BackendMode::Stdio;
        assert_eq!(b.effective_max_procs(), DEFAULT_MAX_PROCS_STDIO);
        b.max_procs = Some(7);
        assert_eq!(b.effective_max_procs(), 7);
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let h = [("User-Agent", "x"), ("cookie", "c=1")];
        let f = RequestFacts { url_path: "/", query: "", host: None, method: "GET", scheme: "http", remote_ip: None, headers: &h, server_socket: "", remote_user: None };
        assert_eq!(f.header("user-agent"), Some("x"));
        assert_eq!(f.header("Cookie"), Some("c=1"));
        assert_eq!(f.header("Referer"), None);
    }
}
