//! The tunnel plan: what the route's settings and the client's upgrade request decide
//! about how payload moves (the opcode of outgoing frames, base64, permessage-deflate,
//! backend framing, the limits client frames are judged by, whether backend output
//! needs re-framing). Pure: no socket, no buffer; `handshake.rs` applies the plan.

use crate::conf::{Charset, Compression, FrameType, InvalidUtf8, WsSettings, BUFFERED_MESSAGE_SIZE_LIMIT};
use crate::payload::framing::{Framing, InboundOpts};
use crate::payload::reframe::ReframeOpts;
use crate::ws::deflate::{self, DeflateParams};
use crate::ws::frame::OpCode;

/// Subprotocols whose meaning wstund implements; others in `wstunnel.subprotocols`
/// are passed through for the backend's sake.
const BUILTIN_SUBPROTOCOL_BINARY: &str = "binary";
const BUILTIN_SUBPROTOCOL_BASE64: &str = "base64";

#[derive(Debug)]
pub struct TunnelPlan {
    /// Opcode of the data frames sent to the client.
    pub opcode: OpCode,
    /// The `base64` subprotocol was chosen.
    pub base64: bool,
    /// permessage-deflate was negotiated: its parameters and the answer for the 101.
    pub deflate: Option<(DeflateParams, String)>,
    pub opts: InboundOpts,
    /// Set when backend output needs more than a frame header (`reframe.rs`).
    pub reframe: Option<ReframeOpts>,
}

impl TunnelPlan {
    /// `subprotocol` is the index of the chosen subprotocol in `settings.subprotocols`;
    /// `extension_offers` the client's `Sec-WebSocket-Extensions` headers.
    pub fn new<'a>(
        settings: &WsSettings,
        subprotocol: Option<usize>,
        extension_offers: impl Iterator<Item = &'a str>,
    ) -> TunnelPlan {
        let chosen = subprotocol.and_then(|i| settings.subprotocols.get(i)).map(String::as_str);
        let base64 = chosen.is_some_and(|p| p.eq_ignore_ascii_case(BUILTIN_SUBPROTOCOL_BASE64));
        let opcode = if base64 {
            OpCode::Text
        } else if chosen.is_some_and(|p| p.eq_ignore_ascii_case(BUILTIN_SUBPROTOCOL_BINARY)) {
            OpCode::Binary
        } else {
            match settings.frame_type {
                FrameType::Binary => OpCode::Binary,
                FrameType::Text => OpCode::Text,
            }
        };
        // permessage-deflate over base64 text would compress the expansion; not offered.
        // A latin1 backend's text is transcoded where it lies, which compression's
        // second buffer would bypass: not offered there.
        let latin1 = settings.backend_charset == Charset::Latin1 && framing_plain(settings.backend_framing);
        let deflate = (settings.compression == Compression::PermessageDeflate && !base64 && !latin1)
            .then(|| deflate::negotiate(extension_offers))
            .flatten();
        let framing = settings.backend_framing;
        // Where messages are delimited or transformed, an unset limit means 1 MiB.
        let delimited = framing != Framing::Stream || deflate.is_some() || base64;
        let max_message_size = match settings.max_message_size {
            0 if delimited => BUFFERED_MESSAGE_SIZE_LIMIT,
            n => n,
        } as u64;
        let opts = InboundOpts {
            require_mask: settings.require_masked_client_frames,
            apply_mask: settings.apply_mask,
            validate_utf8: settings.validate_utf8,
            max_frame_size: settings.max_frame_size as u64,
            max_message_size,
            framing,
            deflate: deflate.is_some(),
            text_control: false,
            line_newline: settings.line_newline,
            to_latin1: latin1 && !base64,
        };
        let reframe = (framing != Framing::Stream
            || deflate.is_some()
            || base64
            || settings.auto_fragment_size > 0
            || settings.mask_server_frames
            // Replacing or switching to binary needs the staged path.
            || (opcode == OpCode::Text && (settings.text_invalid_utf8 != InvalidUtf8::Close || latin1)))
            .then(|| ReframeOpts {
                framing,
                opcode,
                base64,
                auto_fragment: settings.auto_fragment_size,
                mask_frames: settings.mask_server_frames,
                max_message: if framing == Framing::Stream { 0 } else { settings.max_backend_message_size as u64 },
                validate_utf8: true,
                invalid_utf8: settings.text_invalid_utf8,
                latin1,
            });
        TunnelPlan { opcode, base64, deflate, opts, reframe }
    }

    /// A pty route (`"mode" => "pty"`): terminal output goes out in binary frames (it
    /// splits UTF-8 sequences anywhere), client text frames are control messages, bytes
    /// reach the terminal as sent (no line or record framing, no base64) and nothing is
    /// compressed (keystrokes are a few bytes; a control message must be readable as
    /// it arrives).
    pub fn for_terminal(mut self) -> TunnelPlan {
        self.opcode = OpCode::Binary;
        self.base64 = false;
        self.deflate = None;
        self.opts.framing = Framing::Stream;
        self.opts.deflate = false;
        self.opts.text_control = true;
        self.opts.to_latin1 = false;
        self.reframe = self.reframe.and_then(|r| {
            let r = ReframeOpts { framing: Framing::Stream, opcode: OpCode::Binary, base64: false, max_message: 0, latin1: false, ..r };
            (r.auto_fragment > 0 || r.mask_frames).then_some(r)
        });
        self
    }
}

/// Framings whose bytes are the messages' own (not records).
fn framing_plain(f: Framing) -> bool {
    matches!(f, Framing::Stream | Framing::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WsSettings {
        WsSettings::default()
    }

    #[test]
    fn plain_stream_needs_no_reframing() {
        let p = TunnelPlan::new(&settings(), None, std::iter::empty());
        assert_eq!(p.opcode, OpCode::Text);
        assert!(!p.base64 && p.deflate.is_none() && p.reframe.is_none());
        assert_eq!(p.opts.max_message_size, 0);
    }

    #[test]
    fn base64_is_text_never_deflated_and_reframed_with_a_default_limit() {
        let mut s = settings();
        s.compression = Compression::PermessageDeflate;
        let i = s.subprotocols.iter().position(|p| p == "base64");
        let p = TunnelPlan::new(&s, i, ["permessage-deflate"].into_iter());
        assert!(p.base64 && p.deflate.is_none());
        assert_eq!(p.opcode, OpCode::Text);
        assert_eq!(p.opts.max_message_size, BUFFERED_MESSAGE_SIZE_LIMIT as u64);
        assert!(p.reframe.is_some_and(|r| r.base64));
    }

    #[test]
    fn a_terminal_is_binary_uncompressed_and_takes_text_as_control() {
        let mut s = settings();
        s.compression = Compression::PermessageDeflate;
        s.backend_framing = Framing::Line;
        let p = TunnelPlan::new(&s, None, ["permessage-deflate"].into_iter()).for_terminal();
        assert_eq!(p.opcode, OpCode::Binary);
        assert!(p.deflate.is_none() && !p.opts.deflate && p.opts.text_control && p.reframe.is_none());
        assert_eq!(p.opts.framing, Framing::Stream);
    }

    #[test]
    fn deflate_is_negotiated_when_offered() {
        let mut s = settings();
        s.compression = Compression::PermessageDeflate;
        let p = TunnelPlan::new(&s, None, ["permessage-deflate"].into_iter());
        assert!(p.deflate.is_some() && p.opts.deflate && p.reframe.is_some());
        let p = TunnelPlan::new(&s, None, std::iter::empty());
        assert!(p.deflate.is_none() && p.reframe.is_none());
    }
}
