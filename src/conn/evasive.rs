//! lighttpd's mod_evasive: a limit on connections per client address.
//!
//! A connection counts from the moment its request is read and routed until it ends
//! (or goes back to waiting for a kept-alive request): open tunnels, connects in flight,
//! pages and files being sent, as lighttpd counts connections past reading their
//! request. The address is the client's (`remote_addr`, after PROXY and forwarding
//! headers). IPv6 clients count per network (`evasive.ipv6-prefix`, /64 by default: one
//! host usually holds a whole /64, and counting single addresses would let it open a
//! connection per address). Nothing is counted unless some scope sets a limit.

use log::warn;

use crate::conf::WsSettings;
use crate::conn::machine::{Conn, Ctx};
use crate::conn::perip::key;

impl Conn {
    /// Counts this request's connection against its client address, or answers the
    /// refusal when the address already has `evasive.max-conns-per-ip` (403, 429, or a
    /// 302 to `evasive.location`). True when refused.
    pub(crate) fn evasive_refused(&mut self, ctx: &mut Ctx, s: &WsSettings) -> bool {
        self.release_ip_slot(ctx);
        if !ctx.config.evasive_anywhere() {
            return false;
        }
        let Some(ip) = self.remote_addr().map(|a| a.ip()) else { return false };
        let k = key(ip, s.evasive_ipv6_prefix);
        let limit = s.evasive_max_conns_per_ip;
        if limit > 0 && ctx.per_ip.count(k) >= limit {
            if !s.evasive_silent {
                warn!("[c{}] {ip} turned away. Too many connections.", self.id);
            }
            if !s.evasive_location.is_empty() {
                let loc = s.evasive_location.clone();
                self.reject(ctx, 302, &[("Location", loc.as_str())], "");
            } else if s.evasive_http_status == 429 {
                self.reject(ctx, 429, &[("Retry-After", "1")], "too many connections from this address");
            } else {
                self.reject(ctx, 403, &[], "too many connections from this address");
            }
            return true;
        }
        ctx.per_ip.add(k);
        self.ip_slot = Some(k);
        false
    }

    /// Gives back this connection's count (at teardown, and when a kept-alive
    /// connection waits for its next request).
    pub(crate) fn release_ip_slot(&mut self, ctx: &mut Ctx) {
        if let Some(k) = self.ip_slot.take() {
            ctx.per_ip.remove(k);
        }
    }
}

