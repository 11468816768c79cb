//! The nginx recipe of wstund(8): nginx's workers (user www-data) proxy WebSocket to a
//! wstund unix-socket listener made `0660`, group www-data, by `server.socket-perms` and
//! `server.socket-group`, while wstund runs as nobody. It works with no chmod after start.
//! Needs Debian's nginx-light (scripts/test.sh installs it).
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

/// nginx in the foreground; stopped with SIGTERM (its workers go with the master).
struct Nginx {
    child: Child,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the nginx master this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn nginx_conf(dir: &Path, port: u16, sock: &Path) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
user www-data www-data;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location /ws/ {{
            proxy_pass http://unix:{sock}:;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
        }}
    }}
}}
"#,
        sock = sock.display()
    )
}

#[test]
fn nginx_workers_reach_a_unix_listener_through_socket_perms_and_group() {
    assert!(nix::unistd::geteuid().is_root(), "run as root (CI does): nginx's workers switch to www-data");
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"].into_iter().find(|p| Path::new(p).exists());
    let nginx_bin = nginx_bin.expect("nginx is needed (Debian nginx-light; scripts/test.sh installs it)");
    let www = nix::unistd::Group::from_name("www-data").unwrap().expect("group www-data");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("user nobody");

    let be = Backend::echo();
    let dir = TempDir::new("nginx");
    let sock = dir.join("wstund.sock");
    let conf = Conf::tcp(be.port())
        .set("server.username", "\"nobody\"")
        .set("server.socket-perms", "\"0660\"")
        .set("server.socket-group", "\"www-data\"")
        .line(&format!("$SERVER[\"socket\"] == \"unix:{}\" {{ }}", sock.display()));
    let d = Daemon::start_conf(&conf);
    let md = std::fs::metadata(&sock).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o660, "socket mode");
    assert_eq!((md.uid(), md.gid()), (nobody.uid.as_raw(), www.gid.as_raw()), "socket owner and group");

    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let port = refused_port();
    std::fs::write(dir.join("nginx.conf"), nginx_conf(dir.path(), port, &sock)).unwrap();
    let child = Command::new(nginx_bin)
        .args(["-p", dir.path().to_str().unwrap(), "-c", dir.join("nginx.conf").to_str().unwrap(), "-e", dir.join("nginx-error.log").to_str().unwrap()])
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    let _nginx = Nginx { child };
    assert!(
        wait_until(T, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "nginx did not listen: {}",
        std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default()
    );

    let req = UpgradeRequest::new("/ws/");
    let mut c = RawClient::connect(port);
    c.send(&req.bytes());
    let r = c.try_read_response(T).unwrap_or_else(|e| {
        panic!("{e:?}\nnginx: {}\nwstund: {}", std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default(), d.logs())
    });
    assert_eq!(r.status, 101, "through nginx: {:?}\nnginx: {}", r.status_line, std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default());
    for msg in [&b"through nginx"[..], &[7u8; 100_000][..]] {
        c.send_frame(OP_BINARY, msg);
        assert_eq!(c.read_data(msg.len(), T).0, msg);
    }
}
