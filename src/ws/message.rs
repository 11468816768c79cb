//! Fragmentation rules across data frames (RFC 6455 section 5.4).
//!
//! Frames are validated one header at a time; whether a continuation is legal depends on
//! what came before, which is the one bit of state this type keeps. Control frames may
//! appear between fragments and never change it.

use super::frame::{FrameError, FrameHeader, OpCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// What a frame's payload is, once its header has been checked against the message state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Close, ping or pong: handled on its own, outside any message.
    Control(OpCode),
    /// Payload belongs to a `kind` message. `first`: this frame opens the message (the
    /// place to reset a UTF-8 validator). `last`: FIN is set, the message ends with this
    /// frame (the place to check the text is complete).
    Data {
        kind: MessageKind,
        first: bool,
        last: bool,
    },
}

/// Tracks whether a fragmented message is open, and of which kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageState {
    open: Option<MessageKind>,
}

impl MessageState {
    /// The fragmented message open, if any (the upgrade hand-over).
    pub fn open_kind(&self) -> Option<MessageKind> {
        self.open
    }

    pub fn resumed(open: Option<MessageKind>) -> MessageState {
        MessageState { open }
    }

    #[cfg(test)]
    pub fn new() -> MessageState {
        MessageState { open: None }
    }

    /// Checks `h` against the fragmentation rules and advances the state.
    /// On error the state is left unchanged (the connection is being failed anyway).
    #[inline]
    pub fn on_frame(&mut self, h: &FrameHeader) -> Result<DataKind, FrameError> {
        let (kind, first) = match (h.opcode, self.open) {
            (op, _) if op.is_control() => return Ok(DataKind::Control(op)),
            (OpCode::Continuation, Some(kind)) => (kind, false),
            (OpCode::Continuation, None) => return Err(FrameError::UnexpectedContinuation),
            (op, Some(_)) => return Err(FrameError::MessageNotFinished(op)),
            (OpCode::Text, None) => (MessageKind::Text, true),
            (_, None) => (MessageKind::Binary, true),
        };
        self.open = if h.fin { None } else { Some(kind) };
        Ok(DataKind::Data {
            kind,
            first,
            last: h.fin,
        })
    }

    /// The kind of the fragmented message in progress, if any.
    #[cfg(test)]
    pub fn open(&self) -> Option<MessageKind> {
        self.open
    }

    #[cfg(test)]
    pub fn reset(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(fin: bool, opcode: OpCode) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: 0,
        }
    }

    fn data(kind: MessageKind, first: bool, last: bool) -> Result<DataKind, FrameError> {
        Ok(DataKind::Data { kind, first, last })
    }

    use MessageKind::{Binary as B, Text as T};
    use OpCode::*;

    #[test]
    fn sequences() {
        type Step = (bool, OpCode, Result<DataKind, FrameError>);
        let cases: Vec<(&str, Vec<Step>)> = vec![
            ("single text", vec![(true, Text, data(T, true, true))]),
            ("single binary", vec![(true, Binary, data(B, true, true))]),
            (
                "fragmented text with interleaved ping",
                vec![
                    (false, Text, data(T, true, false)),
                    (true, Ping, Ok(DataKind::Control(Ping))),
                    (false, Continuation, data(T, false, false)),
                    (true, Pong, Ok(DataKind::Control(Pong))),
                    (true, Continuation, data(T, false, true)),
                    (true, Binary, data(B, true, true)),
                ],
            ),
            (
                "fragmented binary",
                vec![
                    (false, Binary, data(B, true, false)),
                    (true, Continuation, data(B, false, true)),
                ],
            ),
            (
                "continuation first",
                vec![(true, Continuation, Err(FrameError::UnexpectedContinuation))],
            ),
            (
                "non-final continuation first",
                vec![(false, Continuation, Err(FrameError::UnexpectedContinuation))],
            ),
            (
                "continuation after finished message",
                vec![
                    (true, Text, data(T, true, true)),
                    (true, Continuation, Err(FrameError::UnexpectedContinuation)),
                ],
            ),
            (
                "text while text open",
                vec![
                    (false, Text, data(T, true, false)),
                    (true, Text, Err(FrameError::MessageNotFinished(Text))),
                ],
            ),
            (
                "binary while text open",
                vec![
                    (false, Text, data(T, true, false)),
                    (false, Binary, Err(FrameError::MessageNotFinished(Binary))),
                ],
            ),
            (
                "close inside a fragmented message",
                vec![
                    (false, Binary, data(B, true, false)),
                    (true, Close, Ok(DataKind::Control(Close))),
                    (true, Continuation, data(B, false, true)),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut st = MessageState::new();
            for (i, (fin, op, want)) in steps.into_iter().enumerate() {
                assert_eq!(st.on_frame(&h(fin, op)), want, "{name} step {i}");
            }
        }
    }

    #[test]
    fn control_frames_do_not_touch_state() {
        let mut st = MessageState::new();
        st.on_frame(&h(false, Text)).unwrap();
        assert_eq!(st.open(), Some(T));
        for op in [Ping, Pong, Close] {
            st.on_frame(&h(true, op)).unwrap();
            assert_eq!(st.open(), Some(T));
        }
        st.on_frame(&h(true, Continuation)).unwrap();
        assert_eq!(st.open(), None);
        st.on_frame(&h(true, Ping)).unwrap();
        assert_eq!(st.open(), None);
    }

    #[test]
    fn error_leaves_state_and_reset_clears() {
        let mut st = MessageState::new();
        st.on_frame(&h(false, Binary)).unwrap();
        assert!(st.on_frame(&h(true, Text)).is_err());
        assert_eq!(st.open(), Some(B));
        st.reset();
        assert_eq!(st.open(), None);
    }
}
