//! The application's calls on its sessions: open, accept, send, receive, shut down, close.

use alloc::vec::Vec;

use crate::engine::RecvError;
use crate::session::Session;
use crate::time::Millis;

use super::slot::{State, READABLE};
use super::{CloseReason, Endpoint, EndpointError, PeerAddr, SessionId};

impl<A: PeerAddr> Endpoint<A> {
    /// Opens a session to `addr` with conversation id `conv` (kcp-go's `NewConn3`).
    pub fn connect(&mut self, now: Millis, addr: A, conv: u32) -> Result<SessionId, EndpointError> {
        let t = self.tick(now);
        let now = self.clock(now);
        if self.by_key.contains(&self.slots, &addr, conv) {
            return Err(EndpointError::Duplicate);
        }
        if self.by_key.len() >= self.cfg.max_sessions {
            return Err(EndpointError::TooManySessions);
        }
        let layers = (self.cfg.layers)();
        let id = self
            .create(now, t, addr, conv, layers)
            .map_err(EndpointError::Config)?;
        self.stats.active_opens += 1;
        Ok(id)
    }

    /// A session's state, for reading (stats, conv, RTT...).
    pub fn session(&self, id: SessionId) -> Option<&Session<'static>> {
        self.slot(id).map(|s| &s.session)
    }

    /// A session's state, for changing it (settings at run time). Drain `poll_transmit`
    /// afterwards.
    pub fn session_mut(&mut self, id: SessionId) -> Option<&mut Session<'static>> {
        self.mark(id.idx);
        self.slot_mut(id).map(|s| &mut s.session)
    }

    /// The peer address of a session.
    pub fn remote(&self, id: SessionId) -> Option<A> {
        self.slot(id).map(|s| s.addr)
    }

    /// Half-open entries now: first flights answered, waiting for their peer's answer.
    /// They are not sessions.
    pub fn half_open_len(&self) -> usize {
        self.half.len()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The next session a peer opened, in arrival order.
    ///
    /// Accepting makes room in the backlog ([`EndpointConfig::backlog`](super::EndpointConfig::backlog)): a peer whose answer
    /// to its probe came while the backlog was full gets its session now, queued behind
    /// those already waiting (another [`Event::Incoming`](super::Event::Incoming)), with
    /// its first output due at once.
    pub fn accept(&mut self) -> Option<SessionId> {
        while let Some(id) = self.accept_queue.pop_front() {
            if let Some(slot) = self.slot_mut(id) {
                slot.accepted = true;
                self.mark(id.idx);
                // Room in the backlog: peers that answered while it was full get their
                // sessions now, queued behind those already waiting.
                self.open_answered();
                return Some(id);
            }
        }
        None
    }

    /// Queues data on a session (see [`Kcp::send`](crate::Kcp::send)).
    pub fn send(&mut self, id: SessionId, data: &[u8]) -> Result<usize, EndpointError> {
        let slot = self
            .slots
            .get_mut(id.idx as usize)
            .and_then(Option::as_deref_mut)
            .filter(|s| s.gen == id.gen)
            .ok_or(EndpointError::UnknownSession)?;
        match slot.state {
            State::Open => {}
            State::WriteClosed | State::Draining(_) => return Err(EndpointError::WriteClosed),
            State::Closing(_) => return Err(EndpointError::UnknownSession),
        }
        let kcp = slot.session.kcp_mut();
        kcp.stock_for_send(&mut self.cache, data.len());
        let r = kcp.send(data).map_err(EndpointError::Send);
        if r.is_err() {
            slot.writable = false;
        }
        self.mark(id.idx);
        r
    }

    /// Reads from a session (see [`Kcp::recv`](crate::Kcp::recv)).
    pub fn recv(&mut self, id: SessionId, buf: &mut [u8]) -> Result<usize, EndpointError> {
        let pressed = self.recv_total >= self.cfg.recv_budget_bytes;
        let slot = self
            .slots
            .get_mut(id.idx as usize)
            .and_then(Option::as_deref_mut)
            .filter(|s| s.gen == id.gen)
            .ok_or(EndpointError::UnknownSession)?;
        let r = slot
            .session
            .kcp_mut()
            .recv(buf)
            .map_err(EndpointError::Recv);
        if let Err(EndpointError::Recv(RecvError::WouldBlock)) = r {
            slot.set_flag(READABLE, false);
        }
        // Over the receive budget, what the application read goes back to the endpoint at
        // once (costing what it gives back), for the sessions waiting for room, instead of
        // when this one drains.
        if pressed && slot.session.kcp().spare_chunks() > 0 {
            slot.session.kcp_mut().release_storage(&mut self.cache);
            slot.session.kcp_mut().shrink_receive_storage();
        }
        self.recount_recv(id.idx);
        self.mark(id.idx);
        r
    }

    /// Whether [`recv`](Self::recv) would return data now, without reading it. When it would
    /// not, the next data to arrive raises [`Event::Readable`](super::Event::Readable) again,
    /// as after a `recv` that found nothing: an application can wait for readiness without
    /// holding a buffer and read once it comes.
    pub fn readable(&mut self, id: SessionId) -> Result<bool, EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        let ready = slot.session.kcp().peek_size().is_some();
        if !ready {
            slot.set_flag(READABLE, false);
        }
        Ok(ready)
    }

    /// Whether `send` would currently accept data (kcp-go's Write would not block).
    pub fn is_writable(&self, id: SessionId) -> bool {
        self.slot(id)
            .is_some_and(|s| s.state == State::Open && s.session.kcp().is_writable())
    }

    /// Shuts down the write side (TCP's half-close): data already queued is still delivered,
    /// further [`send`](Self::send)s fail with [`EndpointError::WriteClosed`], and the session
    /// stays open for reading until it is closed or ends. KCP has no FIN: the peer is not
    /// told. [`is_flushed`](Self::is_flushed) says when everything written was acknowledged.
    pub fn shutdown_write(&mut self, id: SessionId) -> Result<(), EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        if slot.state == State::Open {
            slot.state = State::WriteClosed;
            slot.writable = false;
        }
        self.mark(id.idx);
        Ok(())
    }

    /// Whether everything queued on the session was acknowledged by the peer (nothing queued
    /// or in flight). `false` for an unknown session.
    pub fn is_flushed(&self, id: SessionId) -> bool {
        self.slot(id).is_some_and(|s| s.session.kcp().is_idle())
    }

    /// Closes the session once everything queued is acknowledged (a [`CloseReason::Shutdown`]
    /// event), or after `timeout_ms` with [`CloseReason::ShutdownTimeout`]: what closing a TCP
    /// socket with a linger does. Stops the write side at once; data received meanwhile is
    /// still readable. KCP has no FIN: the peer is not told; it will see an idle timeout.
    pub fn close_after_flush(
        &mut self,
        now: Millis,
        id: SessionId,
        timeout_ms: u32,
    ) -> Result<(), EndpointError> {
        let t = self.tick(now);
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        if matches!(slot.state, State::Open | State::WriteClosed) {
            slot.state = State::Draining(t + timeout_ms as u64);
            slot.writable = false;
        }
        self.mark(id.idx);
        Ok(())
    }

    /// Closes a session, dropping whatever data it still holds (kcp-go's `Close`): it flushes
    /// once, so the peer gets the ACKs it is owed, and is gone after the next
    /// [`poll_transmit`](Self::poll_transmit) drain.
    pub fn close(&mut self, id: SessionId) -> Result<(), EndpointError> {
        let slot = self.slot_mut(id).ok_or(EndpointError::UnknownSession)?;
        slot.state = State::Closing(CloseReason::Closed);
        slot.session.kcp_mut().flush();
        self.mark(id.idx);
        Ok(())
    }

    /// Ids of all live sessions.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.as_ref().map(|s| SessionId {
                    idx: i as u32,
                    gen: s.gen,
                })
            })
            .collect()
    }
}
