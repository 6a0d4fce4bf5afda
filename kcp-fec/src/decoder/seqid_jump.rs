//! Which seqids the decoder admits: far jumps are refused unless the stream went quiet or
//! the next packet confirms them (then the stream is re-anchored).

use kcp_core::{CodecError, Millis};

use super::FecDecoder;
use crate::wire::FEC_EXPIRE_MS;

/// A seqid further than this from the newest accepted one is rejected, unless the stream has
/// been silent for 60 s or the next rejected packet confirms the jump (see [`FecDecoder`]).
const MAX_SEQID_JUMP: u32 = 1 << 24;
/// Two consecutive far packets at most this far apart re-anchor the stream.
const RESYNC_WINDOW: u32 = 1024;

impl FecDecoder {
    pub(super) fn check_jump(&mut self, seqid: u32, now: Millis) -> Result<(), CodecError> {
        let accept = match self.anchor {
            None => true,
            Some((newest, at)) => {
                (seqid.wrapping_sub(newest) as i32).unsigned_abs() <= MAX_SEQID_JUMP
                    || now.since(at) > FEC_EXPIRE_MS as i32
            }
        };
        let accept_far = !accept
            && self
                .jump_candidate
                .is_some_and(|c| (1..=RESYNC_WINDOW).contains(&seqid.wrapping_sub(c)));
        if !accept && !accept_far {
            self.jump_candidate = Some(seqid);
            self.stats.seqid_jumps = self.stats.seqid_jumps.wrapping_add(1);
            return Err(CodecError::Malformed);
        }
        self.jump_candidate = None;
        if accept_far {
            // A new epoch: what is queued belongs to groups that can no longer complete.
            self.drop_groups();
        }
        let newest = match self.anchor {
            Some((n, _)) if !accept_far && (seqid.wrapping_sub(n) as i32) < 0 => n,
            _ => seqid,
        };
        self.anchor = Some((newest, now));
        Ok(())
    }
}
