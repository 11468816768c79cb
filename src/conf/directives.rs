//! The declared table of every directive wstund understands, plus the names it
//! knowingly ignores.
//!
//! Each row names the directive, its type, range, unit, default (exactly as
//! `wstund -p` prints it) and a one-line doc; the macro below turns the rows
//! into a field enum and the setter/copier/printer that the evaluator, the
//! per-request resolver and the printer share, so a directive cannot be
//! declared without being wired up.

use super::convert::ConfType;
use super::error::Diag;
pub use super::schema::{Spec, Unit};
use super::model::{ServerSettings, WsSettings};
use super::tls_settings::TlsSettings;
use super::value::Val;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Server(ServerField),
    Ws(WsField),
    /// An `ssl.*` directive: global, or in a `$SERVER["socket"] ==` block.
    Tls(TlsField),
    /// An option inside a `wstunnel.server` backend hash.
    Backend,
}

/// A directive: how its value is typed (`Spec`, all that `convert.rs` needs) and which
/// settings field it fills.
#[derive(Clone, Copy, Debug)]
pub struct Directive {
    pub spec: Spec,
    pub target: Field,
}

impl std::ops::Deref for Directive {
    type Target = Spec;
    fn deref(&self) -> &Spec {
        &self.spec
    }
}

const U31: i64 = i64::MAX >> 32; // 2^31 - 1: what lighttpd's int options hold.
const SIZE_MAX: i64 = i64::MAX;

macro_rules! field_table {
    ($enum:ident, $settings:ty, $table:ident, $target:ident, $set:ident, $copy:ident, $show:ident;
     $( $variant:ident . $field:ident = $name:literal : $ty:literal [$min:expr, $max:expr] [$($allowed:literal),*]
        default $default:tt unit $unit:ident ; $doc:literal )* ) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $enum { $($variant),* }

        pub const $table: &[Directive] = &[ $( Directive {
            spec: Spec { name: $name, ty: $ty, min: $min, max: $max, allowed: &[$($allowed),*],
                default: $default, unit: Unit::$unit, doc: $doc },
            target: Field::$target($enum::$variant),
        } ),* ];

        /// Converts `v` as directive `d` and stores it in the field.
        pub(crate) fn $set(s: &mut $settings, f: $enum, v: &Val, d: &Directive) -> Result<(), Diag> {
            match f { $( $enum::$variant => s.$field = ConfType::from_val(v, d)?, )* }
            Ok(())
        }

        /// Copies one field; how conditional blocks are merged per request.
        #[allow(dead_code)]
        pub(crate) fn $copy(dst: &mut $settings, src: &$settings, f: $enum) {
            match f { $( $enum::$variant => dst.$field = src.$field.clone(), )* }
        }

        /// The field's value in configuration syntax; `None` when unset.
        pub(crate) fn $show(s: &$settings, f: $enum, d: &Directive) -> Option<String> {
            match f { $( $enum::$variant => ConfType::to_conf(&s.$field, d), )* }
        }
    };
}

field_table! { ServerField, ServerSettings, SERVER_DIRECTIVES, Server, set_server, copy_server, show_server;
    Bind.bind = "server.bind" : "string" [0, 0] [] default "\"0.0.0.0\"" unit None;
        "IP address, host name, or absolute path of a unix-domain socket to listen on."
    Port.port = "server.port" : "integer" [0, 65535] [] default "80" unit None;
        "TCP port to listen on; 0 lets the kernel pick a free port."
    MaxReadIdle.max_read_idle = "server.max-read-idle" : "integer" [1, U31] [] default "60" unit Seconds;
        "Close a connection after this long without data from the client (a pong counts)."
    MaxWriteIdle.max_write_idle = "server.max-write-idle" : "integer" [1, U31] [] default "360" unit Seconds;
        "Close a connection when a write to the client makes no progress for this long."
    MaxConnections.max_connections = "server.max-connections" : "integer" [1, U31] [] default "(unset: from the descriptor limit)" unit None;
        "Maximum number of simultaneous client connections; further accepts wait."
    MaxFds.max_fds = "server.max-fds" : "integer" [1, U31] [] default "(unset: keep the inherited limit)" unit None;
        "File descriptor limit (RLIMIT_NOFILE) to set at startup."
    MaxWorker.max_worker = "server.max-worker" : "integer" [0, 1024] [] default "0" unit None;
        "Worker processes: 0 or 1 runs one process; N > 1 starts a supervisor and N workers on SO_REUSEPORT listeners, each with its share of every program cap (max-procs must be >= N)."
    ListenBacklog.listen_backlog = "server.listen-backlog" : "integer" [1, U31] [] default "1024" unit None;
        "listen(2) backlog of the listening sockets."
    DeferAccept.defer_accept = "server.defer-accept" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "TCP_DEFER_ACCEPT on the TCP listeners: a client is accepted once its first bytes arrive (or after about a second), and its request is read at once; as in lighttpd, any non-zero number enables it."
    Errorlog.errorlog = "server.errorlog" : "string (path)" [0, 0] [] default "(unset: standard error)" unit None;
        "File the error log is written to, or \"|command\" for a piped logger (run by /bin/sh, restarted if it dies)."
    ErrorlogUseSyslog.errorlog_use_syslog = "server.errorlog-use-syslog" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Send the error log to syslog (/dev/log) instead of a file."
    SyslogFacility.syslog_facility = "server.syslog-facility" : "string" [0, 0] ["auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "security", "syslog", "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"] default "\"daemon\"" unit None;
        "Syslog facility of the error log and access log lines sent to syslog."
    AccesslogFilename.accesslog_filename = "accesslog.filename" : "string (path)" [0, 0] [] default "(unset: access lines go to the error log)" unit None;
        "File the access log is written to, or \"|command\" for a piped logger."
    AccesslogFormat.accesslog_format = "accesslog.format" : "string" [0, 0] [] default "\"%h %V %u %t \\\"%r\\\" %>s %b \\\"%{Referer}i\\\" \\\"%{User-Agent}i\\\"\"" unit None;
        "Layout of an access line: lighttpd's % fields, plus %{ws-...}x WebSocket fields."
    AccesslogUseSyslog.accesslog_use_syslog = "accesslog.use-syslog" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Send the access log to syslog instead of a file."
    AccesslogSyslogLevel.accesslog_syslog_level = "accesslog.syslog-level" : "integer" [0, 7] [] default "6" unit None;
        "Syslog severity of access lines sent to syslog (6 = info)."
    PidFile.pid_file = "server.pid-file" : "string (path)" [0, 0] [] default "(unset: no pid file)" unit None;
        "File the daemon's process id is written to."
    Username.username = "server.username" : "string" [0, 0] [] default "(unset: keep the current user)" unit None;
        "User to switch to after the listening sockets are opened."
    Groupname.groupname = "server.groupname" : "string" [0, 0] [] default "(unset: the user's group)" unit None;
        "Group to switch to after the listening sockets are opened."
    Chroot.chroot = "server.chroot" : "string (path)" [0, 0] [] default "(unset: no chroot)" unit None;
        "Directory to chroot(2) into after startup."
    SocketPerms.socket_perms = "server.socket-perms" : "string (octal mode)" [0, 0] [] default "(unset: 0777 less the umask)" unit None;
        "Mode of unix-domain listening sockets."
    SocketGroup.socket_group = "server.socket-group" : "string" [0, 0] [] default "(unset: the group wstund runs as)" unit None;
        "Group owning unix-domain listening sockets (a wstund extension)."
    Tag.tag = "server.tag" : "string" [0, 0] [] default (concat!("\"", "wstund/", env!("CARGO_PKG_VERSION"), "\"")) unit None;
        "Value of the Server header in HTTP responses (the 101 and errors); empty sends none."
    GracefulShutdownTimeout.graceful_shutdown_timeout = "server.graceful-shutdown-timeout" : "integer" [0, U31] [] default "8" unit Seconds;
        "After SIGINT open tunnels may run this long before they get 1001 (and a pool a reload removed keeps serving its open tunnels this long); 0 = no limit. lighttpd spells it as a server.feature-flags key, which wstund also reads."
    ControlSocket.control_socket = "server.control-socket" : "string (path)" [0, 0] [] default "(unset: no control socket)" unit None;
        "Unix socket (mode 0600, owned by the run user) taking reload, status, drain, stop and upgrade; the client is wstund -c SOCKET CMD."
    Modules.modules = "server.modules" : "array of strings" [0, 0] [] default "( )" unit None;
        "Modules to load; wstund implements mod_wstunnel, mod_access, mod_auth (mod_authn_file) and mod_status, refuses other TLS modules and warns about any other."
    AuthCache.auth_cache = "auth.cache" : "hash of strings" [0, 0] [] default "( \"max-age\" => \"60\" )" unit None;
        "How long a verified user and password are remembered (seconds; keyed by user, password and the stored hash), so a reconnecting client does not cost a password hash on the loop; \"0\" disables. lighttpd's default is no cache."
}

field_table! { TlsField, TlsSettings, TLS_DIRECTIVES, Tls, set_tls, copy_tls, show_tls;
    Engine.engine = "ssl.engine" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Terminate TLS (wss://) on this listener: globally for server.bind/server.port, or in a $SERVER[\"socket\"] block."
    Pemfile.pemfile = "ssl.pemfile" : "string (path)" [0, 0] [] default "(unset)" unit None;
        "PEM file with the certificate chain, and the private key unless ssl.privkey is set."
    Privkey.privkey = "ssl.privkey" : "string (path)" [0, 0] [] default "(unset: the key is in ssl.pemfile)" unit None;
        "PEM file with the private key of ssl.pemfile's certificate."
    CaFile.ca_file = "ssl.ca-file" : "string (path)" [0, 0] [] default "(unset)" unit None;
        "PEM certificates sent with the chain (intermediates)."
    DhFile.dh_file = "ssl.dh-file" : "string (path)" [0, 0] [] default "(unset)" unit None;
        "Accepted and ignored, with a note: rustls uses only ECDHE key exchange."
    HonorCipherOrder.honor_cipher_order = "ssl.honor-cipher-order" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Choose the cipher by the server's order rather than the client's."
    DisableClientRenegotiation.disable_client_renegotiation = "ssl.disable-client-renegotiation" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Accepted with a note: rustls never renegotiates."
    VerifyActivate.verify_activate = "ssl.verifyclient.activate" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Ask clients for a certificate, verified against ssl.verifyclient.ca-file (or ssl.ca-file)."
    VerifyEnforce.verify_enforce = "ssl.verifyclient.enforce" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "With ssl.verifyclient.activate: a client without a valid certificate fails the handshake; disable lets clients without one in."
    VerifyDepth.verify_depth = "ssl.verifyclient.depth" : "integer" [1, 255] [] default "9" unit None;
        "Longest client certificate chain accepted: the client certificate and the intermediates it sends, up to the CA."
    VerifyCaFile.verify_ca_file = "ssl.verifyclient.ca-file" : "string (path)" [0, 0] [] default "(unset: ssl.ca-file)" unit None;
        "PEM CA certificates client certificates must chain to."
    VerifyUsername.verify_username = "ssl.verifyclient.username" : "string" [0, 0] ["SSL_CLIENT_S_DN_CN", "SSL_CLIENT_S_DN_emailAddress", "SSL_CLIENT_S_DN_UID", "SSL_CLIENT_S_DN_O", "SSL_CLIENT_S_DN_OU", "SSL_CLIENT_S_DN", "SSL_CLIENT_M_SERIAL"] default "(unset: no REMOTE_USER)" unit None;
        "The client certificate field a stdio program gets as REMOTE_USER."
    AcmeTls1.acme_tls_1 = "ssl.acme-tls-1" : "string (path)" [0, 0] [] default "(unset: acme-tls/1 not answered)" unit None;
        "Directory of TLS-ALPN-01 (RFC 8737) challenge certificates: a client asking for ALPN acme-tls/1 with SNI NAME gets NAME.crt.pem with key NAME.key.pem, and the connection closes after the handshake."
    ConfCmd.conf_cmd = "ssl.openssl.ssl-conf-cmd" : "hash of strings" [0, 0] [] default "( )" unit None;
        "OpenSSL settings mapped to rustls: MinProtocol, MaxProtocol (TLSv1.2, TLSv1.3), CipherString (TLS 1.2), Ciphersuites (TLS 1.3); any other key is an error."
}

field_table! { WsField, WsSettings, WS_DIRECTIVES, Ws, set_ws, copy_ws, show_ws;
    Server.servers = "wstunnel.server" : "hash of backend lists" [0, 0] [] default "( )" unit None;
        "Backends per URL-path prefix or extension (see BACKENDS)."
    Balance.balance = "wstunnel.balance" : "string" [0, 0] ["fair", "least-connection", "round-robin", "hash", "sticky"] default "\"fair\"" unit None;
        "Load-balancing algorithm across the backends of a route."
    Debug.debug = "wstunnel.debug" : "integer" [0, 65535] [] default "0" unit None;
        "Debug level; higher values log more per connection."
    FrameType.frame_type = "wstunnel.frame-type" : "string" [0, 0] ["text", "binary"] default "\"text\"" unit None;
        "Frame type used for data sent to the client."
    MapExtensions.map_extensions = "wstunnel.map-extensions" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Maps further extensions to the route of another extension key."
    Origins.origins = "wstunnel.origins" : "array of strings" [0, 0] [] default "( )" unit None;
        "Permitted Origin header values; empty permits any origin and a missing Origin."
    PingInterval.ping_interval = "wstunnel.ping-interval" : "integer" [0, U31] [] default "0" unit Seconds;
        "Send a PING frame every this many seconds; 0 sends none."
    MaxFrameSize.max_frame_size = "wstunnel.max-frame-size" : "integer" [0, SIZE_MAX] [] default "0" unit Bytes;
        "Largest accepted client frame payload; 0 = unlimited."
    MaxMessageSize.max_message_size = "wstunnel.max-message-size" : "integer" [0, SIZE_MAX] [] default "0" unit Bytes;
        "Largest accepted client message; 0 = unlimited, but 1 MiB when messages are buffered."
    MaxBackendMessageSize.max_backend_message_size = "wstunnel.max-backend-message-size" : "integer" [0, SIZE_MAX] [] default "16777216" unit Bytes;
        "Largest message accepted from a backend in line or framed mode."
    AutoFragmentSize.auto_fragment_size = "wstunnel.auto-fragment-size" : "integer" [0, SIZE_MAX] [] default "0" unit Bytes;
        "Split messages to the client into frames of at most this size; 0 = never split."
    ValidateUtf8.validate_utf8 = "wstunnel.validate-utf8" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Close with 1007 when a text message from the client is not valid UTF-8."
    RequireMaskedClientFrames.require_masked_client_frames = "wstunnel.require-masked-client-frames" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Close with 1002 when a client frame is not masked (RFC 6455 requires masking)."
    ApplyMask.apply_mask = "wstunnel.apply-mask" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Unmask client payloads before passing them on (disable only for testing)."
    MaskServerFrames.mask_server_frames = "wstunnel.mask-server-frames" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Mask frames sent to the client (not allowed by RFC 6455; for testing)."
    FailByDrop.fail_by_drop = "wstunnel.fail-by-drop" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "On a protocol error drop the TCP connection instead of sending a close frame."
    EchoCloseCodereason.echo_close_codereason = "wstunnel.echo-close-codereason" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Answer a client close frame with the client's own code and reason."
    OpenHandshakeTimeout.open_handshake_timeout = "wstunnel.open-handshake-timeout" : "integer" [0, U31] [] default "10000" unit Millis;
        "Time allowed from accept to a complete upgrade request; 0 = no limit."
    CloseHandshakeTimeout.close_handshake_timeout = "wstunnel.close-handshake-timeout" : "integer" [0, U31] [] default "5000" unit Millis;
        "Time allowed for the peer's close frame after ours; 0 = no limit."
    TcpNodelay.tcp_nodelay = "wstunnel.tcp-nodelay" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Set TCP_NODELAY on client and backend sockets."
    PingTimeout.ping_timeout = "wstunnel.ping-timeout" : "integer" [0, U31] [] default "0" unit Seconds;
        "Close with 1001 when no PONG arrives this long after a PING; 0 = do not wait."
    PingSize.ping_size = "wstunnel.ping-size" : "integer" [4, 125] [] default "4" unit Bytes;
        "Payload size of PING frames."
    IdlePing.idle_ping = "wstunnel.idle-ping" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "With ping-interval 0: ping a client silent for half of server.max-read-idle, so one that answers is not cut (a wstund extension)."
    Versions.versions = "wstunnel.versions" : "array of integers" [0, 255] ["13", "8"] default "( 13 )" unit None;
        "Accepted Sec-WebSocket-Version values."
    Subprotocols.subprotocols = "wstunnel.subprotocols" : "array of strings" [0, 0] [] default "( \"binary\", \"base64\" )" unit None;
        "Subprotocols offered to clients, in order of preference."
    RequireSubprotocol.require_subprotocol = "wstunnel.require-subprotocol" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Refuse clients that request none of the configured subprotocols."
    Compression.compression = "wstunnel.compression" : "string" [0, 0] ["", "permessage-deflate"] default "\"\"" unit None;
        "WebSocket extension used to compress messages; empty disables compression."
    CompressionLevel.compression_level = "wstunnel.compression-level" : "integer" [1, 9] [] default "6" unit None;
        "Deflate level, 1 (fastest) to 9 (smallest)."
    CompressionMinSize.compression_min_size = "wstunnel.compression-min-size" : "integer" [0, SIZE_MAX] [] default "64" unit Bytes;
        "Messages smaller than this are sent uncompressed."
    BackendFraming.backend_framing = "wstunnel.backend-framing" : "string" [0, 0] ["stream", "line", "framed"] default "\"stream\"" unit None;
        "How message boundaries are kept on the backend byte stream."
    LineNewline.line_newline = "wstunnel.line-newline" : "string" [0, 0] ["if-missing", "always"] default "\"if-missing\"" unit None;
        "line framing: append a newline to a client message only if it does not already end in one, or always."
    TextInvalidUtf8.text_invalid_utf8 = "wstunnel.text-invalid-utf8" : "string" [0, 0] ["close", "replace", "binary"] default "\"close\"" unit None;
        "Backend output that is not UTF-8 on a text route: close (1011), replace each bad sequence with U+FFFD, or send that message as a binary frame."
    BackendCharset.backend_charset = "wstunnel.backend-charset" : "string" [0, 0] ["utf-8", "latin1"] default "\"utf-8\"" unit None;
        "Character set of a text route's backend: latin1 transcodes its bytes to UTF-8 and client text back (characters above U+00FF become ?)."
    LineFlush.line_flush = "wstunnel.line-flush-ms" : "integer" [0, U31] [] default "250" unit Millis;
        "line framing: a partial backend line that has waited this long is sent as a message (prompts appear); 0 waits for the newline."
    // mod_access: per request like the wstunnel.* rows, so conditionals can set it.
    AccessDeny.access_deny = "url.access-deny" : "array of strings" [0, 0] [] default "( )" unit None;
        "Answer 403 when the decoded URL path ends with one of these; \"\" denies every path."
    AccessAllow.access_allow = "url.access-allow" : "array of strings" [0, 0] [] default "( )" unit None;
        "When set, answer 403 unless the decoded URL path ends with one of these (url.access-deny is then not used)."
    // wstund's own HTTP pages: per request, so `$HTTP["remoteip"]` can restrict them.
    MetricsUrl.metrics_url = "wstund.metrics-url" : "string" [0, 0] [] default "\"\"" unit None;
        "URL path answered with every counter and gauge in the Prometheus text format; empty: no metrics page."
    HealthUrl.health_url = "wstund.health-url" : "string" [0, 0] [] default "\"\"" unit None;
        "URL path answered 200 while serving, 503 while stopping or when every backend of a wstund.health-routes route is down; empty: no health page."
    Devconsole.devconsole = "wstund.devconsole" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "A browser's plain GET on a route gets a built-in page to send messages and see replies (websocketd's --devconsole)."
    HealthRoutes.health_routes = "wstund.health-routes" : "array of strings" [0, 0] [] default "( )" unit None;
        "wstunnel.server keys whose backends must not all be down for wstund.health-url to answer 200."
    // mod_status: per request, so `$HTTP["remoteip"]` can restrict the pages.
    StatusUrl.status_url = "status.status-url" : "string" [0, 0] [] default "\"\"" unit None;
        "URL path of the status page (HTML; ?json, ?auto as lighttpd's); empty: none."
    StatusConfigUrl.status_config_url = "status.config-url" : "string" [0, 0] [] default "\"\"" unit None;
        "URL path of the page listing the modules and routes this wstund serves; empty: none."
    StatusStatisticsUrl.status_statistics_url = "status.statistics-url" : "string" [0, 0] [] default "\"\"" unit None;
        "URL path of the counters as lighttpd's statistics lines (wstunnel.backend.<host>.<counter>: N); empty: none."
    // mod_staticfile, mod_indexfile: per request like lighttpd's.
    DocumentRoot.document_root = "server.document-root" : "string (path)" [0, 0] [] default "\"\"" unit None;
        "Directory requests no wstunnel.server route takes are answered from (GET and HEAD); empty: no files, 404."
    FollowSymlink.follow_symlink = "server.follow-symlink" : "boolean" [0, 0] [] default "\"enable\"" unit None;
        "Follow symbolic links below the document root; disable refuses (403) any path through a symlink."
    IndexFileNames.index_file_names = "index-file.names" : "array of strings" [0, 0] [] default "( )" unit None;
        "Files tried, in order, for a request naming a directory; none found: 403."
    MimetypeAssign.mimetype_assign = "mimetype.assign" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Content-Type by file-name suffix (longest match; \"\" is the default); unmatched: application/octet-stream."
    StaticFileExclude.static_file_exclude = "static-file.exclude-extensions" : "array of strings" [0, 0] [] default "( )" unit None;
        "Files whose path ends with one of these are not served (403)."
    // mod_extforward: per request (the forwarder may depend on $SERVER["socket"]);
    // hap-PROXY is decided at accept from the listener and the peer's address.
    ExtforwardForwarder.extforward_forwarder = "extforward.forwarder" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Proxies trusted to name the client: \"IP\" or \"IP/prefix\" => \"trust\" (or \"untrusted\"); \"all\" => \"trust\" trusts every connecting address."
    ExtforwardHeaders.extforward_headers = "extforward.headers" : "array of strings" [0, 0] [] default "( )" unit None;
        "Headers that name the client, first present wins (X-Forwarded-For, Forwarded-For, Forwarded as RFC 7239); empty: X-Forwarded-For and Forwarded-For, or none with hap-PROXY."
    ExtforwardParams.extforward_params = "extforward.params" : "hash of strings" [0, 0] [] default "( )" unit None;
        "lighttpd's Forwarded host and remote_user switches; wstund accepts only \"disable\" for both."
    ExtforwardHapProxy.extforward_hap_proxy = "extforward.hap-PROXY" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "A trusted forwarder's connections must begin with a PROXY protocol v1 or v2 header (before TLS), which names the client; others are served as they come, and one sending a PROXY header is closed."
    ExtforwardHapProxySslClientVerify.extforward_hap_proxy_ssl_client_verify = "extforward.hap-PROXY-ssl-client-verify" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Not implemented: \"enable\" is a configuration error."
    // mod_evasive
    EvasiveMaxConnsPerIp.evasive_max_conns_per_ip = "evasive.max-conns-per-ip" : "integer" [0, 65535] [] default "0" unit None;
        "A request from a client address that already has this many connections past their request gets the refusal; 0 = no limit."
    EvasiveSilent.evasive_silent = "evasive.silent" : "boolean" [0, 0] [] default "\"disable\"" unit None;
        "Do not log refused clients."
    EvasiveLocation.evasive_location = "evasive.location" : "string" [0, 0] [] default "\"\"" unit None;
        "Refuse with a 302 redirect to this URL instead of 403 or 429."
    EvasiveHttpStatus.evasive_http_status = "evasive.http-status" : "integer" [403, 429] [] default "403" unit None;
        "Status of the refusal: 403 (lighttpd's) or 429 with Retry-After (a wstund extension)."
    EvasiveIpv6Prefix.evasive_ipv6_prefix = "evasive.ipv6-prefix" : "integer" [1, 128] [] default "64" unit None;
        "IPv6 clients are counted per network of this prefix length, as one host usually holds a /64 (a wstund extension)."
    // mod_auth with mod_authn_file: per request, so conditionals can set them.
    AuthBackend.auth_backend = "auth.backend" : "string" [0, 0] [] default "\"\"" unit None;
        "Where users come from: \"htpasswd\" (hashed passwords) or \"plain\" (clear text); any other backend is a conf error."
    AuthHtpasswdUserfile.auth_htpasswd_userfile = "auth.backend.htpasswd.userfile" : "string (path)" [0, 0] [] default "\"\"" unit None;
        "htpasswd file (user:hash lines: bcrypt $2y$, SHA-crypt $5$/$6$, MD5 $apr1$); read at load, re-read when its mtime, size or inode changes."
    AuthPlainUserfile.auth_plain_userfile = "auth.backend.plain.userfile" : "string (path)" [0, 0] [] default "\"\"" unit None;
        "File of user:password lines in clear text; read at load, re-read when it changes."
    AuthRequire.auth_require = "auth.require" : "hash of auth rules" [0, 0] [] default "( )" unit None;
        "URL-path prefix => ( \"method\" => \"basic\", \"realm\" => ..., \"require\" => \"valid-user\" or \"user=a|user=b\" ); the first matching prefix applies; a request without valid credentials gets 401 before any upgrade."
    // mod_setenv: per request, so conditionals can set them.
    SetenvAddResponseHeader.setenv_add_response_header = "setenv.add-response-header" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Headers added to the 101 and to the responses after authentication (errors, static files); Connection, Content-Length, Transfer-Encoding, Upgrade and Sec-WebSocket-* cannot be set."
    SetenvSetResponseHeader.setenv_set_response_header = "setenv.set-response-header" : "hash of strings" [0, 0] [] default "( )" unit None;
        "As setenv.add-response-header, but replacing a header of that name wstund would send (Server, Content-Type, ...); \"\" removes it."
    SetenvAddEnvironment.setenv_add_environment = "setenv.add-environment" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Variables for stdio and pty programs (a variable already set gets \", value\" appended, as lighttpd does); pool processes get the global scope's when they start."
    SetenvSetEnvironment.setenv_set_environment = "setenv.set-environment" : "hash of strings" [0, 0] [] default "( )" unit None;
        "As setenv.add-environment, but replacing a variable's value; bin-environment still wins."
    SetenvAddRequestHeader.setenv_add_request_header = "setenv.add-request-header" : "hash of strings" [0, 0] [] default "( )" unit None;
        "Request headers added for stdio and pty programs (their HTTP_* variables); conditionals and TCP/unix backends never see them."
    SetenvSetRequestHeader.setenv_set_request_header = "setenv.set-request-header" : "hash of strings" [0, 0] [] default "( )" unit None;
        "As setenv.add-request-header, but replacing the client's header of that name; \"\" removes it."
}

/// Options of one backend inside `wstunnel.server`, in the order `-p` prints them.
pub const BACKEND_OPTIONS: &[Directive] = &[
    backend_opt("host", "string", 0, 0, &[], "(none)", Unit::None, "IP address or host name of a TCP backend."),
    backend_opt("port", "integer", 1, 65535, &[], "(none)", Unit::None, "TCP port of the backend."),
    backend_opt("socket", "string (path)", 0, 0, &[], "(none)", Unit::None, "Path of a unix-domain socket backend."),
    backend_opt("bin-path", "string, or array of strings", 0, 0, &[], "(none)", Unit::None, "Program started by wstund to serve this backend: a command line with shell-like quoting (see MANAGED PROCESSES), or an array of arguments."),
    backend_opt("bin-environment", "hash of strings", 0, 0, &[], "( )", Unit::None, "Environment variables set for the program."),
    backend_opt("bin-copy-environment", "array of strings", 0, 0, &[], "(unset: pools copy the whole environment; stdio programs get PATH, LD_LIBRARY_PATH, LANG, TZ)", Unit::None, "Only these variables of wstund's environment are passed to the program."),
    backend_opt("mode", "string", 0, 0, &["socket", "stdio", "pty"], "\"socket\"", Unit::None, "socket: the program listens on host:port or socket; stdio: one program per connection on stdin/stdout; pty: one program per connection on a pseudo-terminal (binary frames are terminal data, text frames control messages)."),
    backend_opt("bin-cwd", "string (path)", 0, 0, &[], "(unset: the bin-path's directory for stdio, the run user's home for pty)", Unit::None, "Working directory of a per-connection program."),
    backend_opt("min-procs", "integer", 0, U31, &[], "4", Unit::None, "Processes kept running for a spawned pool."),
    backend_opt("max-procs", "integer", 1, U31, &[], "(unset: 4 for pools, 1024 for stdio and pty)", Unit::None, "Upper limit of processes; for a stdio route, of programs running at once (over it the upgrade gets 429)."),
    backend_opt("max-load-per-proc", "integer", 1, U31, &[], "1", Unit::None, "Connections per process before another process is started."),
    backend_opt("idle-timeout", "integer", 0, U31, &[], "60", Unit::Seconds, "Idle time after which a surplus process is stopped."),
    backend_opt("disable-time", "integer", 0, U31, &[], "1", Unit::Seconds, "How long a failed backend is skipped before it is tried again."),
    backend_opt("connect-timeout", "integer", 0, U31, &[], "8", Unit::Seconds, "Time allowed for connecting to the backend before the next one is tried (0 = no limit)."),
    backend_opt("kill-signal", "integer", 1, 64, &[], "15", Unit::None, "Signal used to stop a spawned process (number or name such as \"SIGINT\")."),
    backend_opt("listen-backlog", "integer", 1, U31, &[], "1024", Unit::None, "listen(2) backlog of the socket of a spawned pool."),
    backend_opt("close-timeout", "integer", 0, U31, &[], "100", Unit::Millis, "stdio programs: after the client is gone and stdin is closed, the gap between each step of the SIGINT, SIGTERM, SIGKILL ladder."),
    backend_opt("weight", "integer", 1, 65535, &[], "1", Unit::None, "Relative share of connections under balancing; honoured by every algorithm."),
    backend_opt("check-interval", "integer", 0, U31, &[], "0", Unit::Seconds, "Seconds between active health probes of a remote backend (TCP connect, optional send/expect); 0 disables them. Not for bin-path backends, which wstund supervises itself."),
    backend_opt("check-timeout", "integer", 1, U31, &[], "2", Unit::Seconds, "Time a health probe may take (connect + expected reply) before it counts as failed."),
    backend_opt("check-send", "string", 0, 0, &[], "\"\"", Unit::None, "Bytes a health probe writes after connecting; \\n, \\r, \\t, \\0 and \\xHH escapes are decoded."),
    backend_opt("check-expect", "string", 0, 0, &[], "\"\"", Unit::None, "The probe succeeds only if the reply contains this string (same escapes); empty = connecting is enough."),
    backend_opt("rise", "integer", 1, 255, &[], "2", Unit::None, "Consecutive successful probes that bring an unhealthy backend back."),
    backend_opt("fall", "integer", 1, 255, &[], "3", Unit::None, "Consecutive failed probes that take a healthy backend out."),
    backend_opt("tls", "boolean", 0, 0, &[], "\"disable\"", Unit::None, "Speak TLS to this backend (host and port only); a failed handshake counts as a failed connect."),
    backend_opt("tls-ca-file", "string (path)", 0, 0, &[], "(unset: /etc/ssl/certs/ca-certificates.crt)", Unit::None, "PEM CAs the backend's certificate must chain to."),
    backend_opt("tls-server-name", "string", 0, 0, &[], "(unset: the host)", Unit::None, "Name sent as SNI and expected in the backend's certificate."),
    backend_opt("tls-verify", "boolean", 0, 0, &[], "\"enable\"", Unit::None, "Verify the backend's certificate; disable accepts any (the session is still encrypted)."),
    backend_opt("tls-cert-file", "string (path)", 0, 0, &[], "(unset: no client certificate)", Unit::None, "PEM certificate chain wstund presents to the backend (mTLS)."),
    backend_opt("tls-key-file", "string (path)", 0, 0, &[], "(unset)", Unit::None, "PEM private key of tls-cert-file."),
    backend_opt("token-file", "string (path)", 0, 0, &[], "(none)", Unit::None, "A websockify token file (\"token: host:port\" or \"token: unix_socket:/path\" lines) or a directory of them: the backend's address is the request's token looked up there (instead of host, port and socket); an unknown token gets 404. Re-read when it changes, at most every 500 ms."),
    backend_opt("token-from", "string", 0, 0, &["query", "path", "host"], "\"query\"", Unit::None, "Where the token is: query = the token-param query parameter (websockify), path = the path segment after the route key, host = the Host header without its port (websockify's --host-token)."),
    backend_opt("token-param", "string", 0, 0, &[], "\"token\"", Unit::None, "The query parameter that carries the token (\"token-from\" => \"query\")."),
    backend_opt("proxy-protocol", "string", 0, 0, &["v1", "v2"], "(unset: none)", Unit::None, "Send a PROXY protocol header of this version before anything else (before TLS), naming the client and the address it connected to (see PROXY PROTOCOL TO BACKENDS)."),
    backend_opt("resolve-interval", "integer", 0, U31, &[], "60", Unit::Seconds, "Seconds between lookups of a host name (off the event loop; a name that stops resolving keeps its last addresses); 0 looks it up only at start."),
];

#[allow(clippy::too_many_arguments)] // one call per table row reads better than a struct literal
const fn backend_opt(
    name: &'static str,
    ty: &'static str,
    min: i64,
    max: i64,
    allowed: &'static [&'static str],
    default: &'static str,
    unit: Unit,
    doc: &'static str,
) -> Directive {
    Directive { spec: Spec { name, ty, min, max, allowed, default, unit, doc }, target: Field::Backend }
}

/// lighttpd backend options that have no meaning for wstund: accepted, warned about.
pub const IGNORED_BACKEND_OPTIONS: &[&str] = &[
    "check-local",
    "docroot",
    "strip-request-uri",
    "fix-root-scriptname",
    "broken-scriptfilename",
    "allow-x-send-file",
    "x-sendfile",
    "x-sendfile-docroot",
    "tcp-fin-propagate",
    "read-timeout",
    "write-timeout",
    "upgrade",
];

/// Real lighttpd `server.*` directives wstund does not use, with the module
/// (or `core`) that implements them in lighttpd.
pub const IGNORED_SERVER: &[(&str, &str)] = &[
    ("server.force-lowercase-filenames", "mod_staticfile"),
    ("server.range-requests", "mod_staticfile"),
    ("server.dir-listing", "mod_dirlisting"),
    ("server.name", "core"),
    ("server.errorfile-prefix", "core"),
    ("server.error-handler", "core"),
    ("server.error-handler-404", "core"),
    ("server.error-intercept", "core"),
    ("server.event-handler", "core"),
    ("server.network-backend", "core"),
    ("server.use-ipv6", "core"),
    ("server.set-v6only", "core"),
    ("server.v4mapped", "core"),
    ("server.max-request-size", "core"),
    ("server.max-request-field-size", "core"),
    ("server.max-keep-alive-requests", "core"),
    ("server.max-keep-alive-idle", "core"),
    ("server.kbytes-per-second", "core"),
    ("server.protocol-http11", "core"),
    ("server.h2proto", "core"),
    ("server.h2c", "core"),
    ("server.stat-cache-engine", "core"),
    ("server.upload-dirs", "core"),
    ("server.upload-temp-file-size", "core"),
    ("server.core-files", "core"),
    ("server.compat-module-load", "core"),
    ("server.chunkqueue-chunk-sz", "core"),
    ("server.reject-expect-100-with-417", "core"),
    ("server.breakagelog", "core"),
    ("server.http-parseopts", "core"),
    ("server.http-parseopt-header-strict", "core"),
    ("server.http-parseopt-host-strict", "core"),
    ("server.http-parseopt-host-normalize", "core"),
    ("server.bsd-accept-filter", "core"),
    ("server.stream-request-body", "core"),
    ("server.stream-response-body", "core"),
    ("server.systemd-socket-activation", "core"),
    ("server.feature-flags", "core"),
    ("server.graceful-restart-bg", "core"),
    ("server.errorlog-high-precision", "core"),
    ("server.clean-chroot", "core"),
];

/// Directive-name prefixes of other lighttpd modules (longest match wins).
pub const MODULE_PREFIXES: &[(&str, &str)] = &[
    ("accesslog.", "mod_accesslog"),
    ("ajp13.", "mod_ajp13"),
    ("alias.", "mod_alias"),
    ("cgi.", "mod_cgi"),
    ("cml.", "mod_cml"),
    ("compress.", "mod_compress"),
    ("connection.", "core"),
    ("debug.", "core"),
    ("deflate.", "mod_deflate"),
    ("dir-listing.", "mod_dirlisting"),
    ("etag.", "core"),
    ("evasive.", "mod_evasive"),
    ("evhost.", "mod_evhost"),
    ("expire.", "mod_expire"),
    ("extforward.", "mod_extforward"),
    ("fastcgi.", "mod_fastcgi"),
    ("flv-streaming.", "mod_flv_streaming"),
    ("geoip.", "mod_geoip"),
    ("gnutls.", "mod_gnutls"),
    ("index-file.", "mod_indexfile"),
    ("magnet.", "mod_magnet"),
    ("maxminddb.", "mod_maxminddb"),
    ("mbedtls.", "mod_mbedtls"),
    ("mimetype.", "core"),
    ("mysql-vhost.", "mod_mysql_vhost"),
    ("nss.", "mod_nss"),
    ("openssl.", "mod_openssl"),
    ("proxy.", "mod_proxy"),
    ("rrdtool.", "mod_rrdtool"),
    ("scgi.", "mod_scgi"),
    ("secdownload.", "mod_secdownload"),
    ("simple-vhost.", "mod_simple_vhost"),
    ("sockproxy.", "mod_sockproxy"),
    ("ssi.", "mod_ssi"),
    ("ssl.", "mod_openssl"),
    ("static-file.", "mod_staticfile"),
    ("status.", "mod_status"),
    ("trigger-before-download.", "mod_trigger_b4_dl"),
    ("uploadprogress.", "mod_uploadprogress"),
    ("url.", "mod_rewrite"),
    ("url.redirect", "mod_redirect"),
    ("userdir.", "mod_userdir"),
    ("usertrack.", "mod_usertrack"),
    ("vhostdb.", "mod_vhostdb"),
    ("webdav.", "mod_webdav"),
    ("wolfssl.", "mod_wolfssl"),
];

/// Modules wstund implements; any other `server.modules` entry is warned about.
pub const IMPLEMENTED_MODULES: &[&str] = &["mod_wstunnel", "mod_accesslog", "mod_access", "mod_auth", "mod_authn_file", "mod_setenv", "mod_openssl", "mod_status", "mod_staticfile", "mod_indexfile", "mod_extforward", "mod_evasive"];

/// Every directive wstund acts on, server first.
pub fn all() -> impl Iterator<Item = &'static Directive> {
    SERVER_DIRECTIVES.iter().chain(WS_DIRECTIVES.iter()).chain(TLS_DIRECTIVES.iter())
}

pub fn lookup(name: &str) -> Option<&'static Directive> {
    all().find(|d| d.name == name)
}

/// The module an ignored directive belongs to, if it is a known lighttpd one.
pub fn ignored_module(name: &str) -> Option<&'static str> {
    if let Some((_, m)) = IGNORED_SERVER.iter().find(|(n, _)| *n == name) {
        return Some(m);
    }
    MODULE_PREFIXES
        .iter()
        .filter(|(p, _)| name.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, m)| *m)
}

/// Edit distance counting an adjacent swap as one edit (optimal string
/// alignment), for "did you mean" suggestions: `hots` is one typo from `host`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1).min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The closest candidate within a distance that still looks like a typo.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 4);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Every name a `server.*` directive may have (used and ignored ones).
pub fn server_names() -> impl Iterator<Item = &'static str> {
    SERVER_DIRECTIVES.iter().map(|d| d.name).chain(IGNORED_SERVER.iter().map(|(n, _)| *n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::model::{ServerSettings, WsSettings};

    #[test]
    fn table_defaults_match_the_model_defaults() {
        let s = ServerSettings::default();
        for d in SERVER_DIRECTIVES {
            let Field::Server(f) = d.target else { panic!("{}", d.name) };
            match show_server(&s, f, d) {
                Some(v) => assert_eq!(v, d.default, "{}", d.name),
                None => assert!(d.default.starts_with("(unset"), "{}: {}", d.name, d.default),
            }
        }
        let w = WsSettings::default();
        for d in WS_DIRECTIVES {
            let Field::Ws(f) = d.target else { panic!("{}", d.name) };
            assert_eq!(show_ws(&w, f, d).as_deref(), Some(d.default), "{}", d.name);
        }
        let t = TlsSettings::default();
        for d in TLS_DIRECTIVES {
            let Field::Tls(f) = d.target else { panic!("{}", d.name) };
            match show_tls(&t, f, d) {
                Some(v) => assert_eq!(v, d.default, "{}", d.name),
                None => assert!(d.default.starts_with("(unset"), "{}: {}", d.name, d.default),
            }
        }
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for d in all() {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            let prefixed = ["server.", "wstunnel.", "accesslog.", "url.access-", "ssl.", "wstund.", "status.", "index-file.", "mimetype.", "static-file.", "extforward.", "evasive.", "auth.", "setenv."].iter().any(|p| d.name.starts_with(p));
            assert!(prefixed, "{}", d.name);
            assert!(!d.doc.is_empty());
        }
        for (n, _) in IGNORED_SERVER {
            assert!(seen.insert(n), "{} is both used and ignored", n);
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("hots", "host"), 1);
        assert_eq!(suggest("server.prot", server_names()), Some("server.port"));
        assert_eq!(suggest("server.max-keepalive-idle", server_names()), Some("server.max-keep-alive-idle"));
        assert_eq!(suggest("server.completely-different", server_names()), None);
        assert_eq!(suggest("bin_path", BACKEND_OPTIONS.iter().map(|d| d.name)), Some("bin-path"));
    }

    /// Every directive and backend option has an entry in wstund.conf(5)
    /// stating its default. roff spells '-' as "\-" and '\\' as "\e".
    #[test]
    fn man_page_documents_every_directive() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/wstund.conf.5");
        let man = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {}", path, e));
        let roff = |s: &str| s.replace('\\', "\\e").replace('-', "\\-");
        for d in all().chain(BACKEND_OPTIONS.iter()) {
            let entry = format!("\n.TP\n.B {}\n", roff(d.name));
            let at = man.find(&entry).unwrap_or_else(|| panic!("{} has no entry in {}", d.name, path));
            let body = &man[at + entry.len()..];
            let body = &body[..body.find("\n.TP").unwrap_or(body.len())];
            // roff joins text lines with a space: a default may wrap (lines <= 80 bytes).
            let body = body.replace('\n', " ");
            assert!(body.contains(&format!("Default: {}.", roff(d.default))), "{}: default {} not stated", d.name, d.default);
        }
    }

    #[test]
    fn module_lookup() {
        assert_eq!(ignored_module("server.range-requests"), Some("mod_staticfile"));
        assert_eq!(ignored_module("url.rewrite-once"), Some("mod_rewrite"));
        assert_eq!(ignored_module("url.access-deny"), Some("mod_rewrite"), "only reached for names lookup() does not know");
        assert!(lookup("url.access-deny").is_some() && lookup("url.access-allow").is_some());
        assert_eq!(ignored_module("ssl.engine"), Some("mod_openssl"));
        assert_eq!(ignored_module("wstunnel.server"), None);
        assert_eq!(ignored_module("frobnicate.x"), None);
    }
}
