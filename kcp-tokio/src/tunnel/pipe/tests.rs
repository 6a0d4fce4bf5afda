use super::*;

use std::task::Waker;

use tokio::io::{duplex, AsyncReadExt, DuplexStream};

/// A stream whose writes take at most `max` bytes, and every other one waits (waking its
/// task at once): a destination that keeps making the pipe hold what it read.
struct Stingy {
    inner: DuplexStream,
    max: usize,
    flip: bool,
    /// Writes it turned away or cut short.
    short: usize,
}

impl AsyncRead for Stingy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stingy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.flip = !self.flip;
        if self.flip {
            self.short += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = data.len().min(self.max);
        if n < data.len() {
            self.short += 1;
        }
        Pin::new(&mut self.inner).poll_write(cx, &data[..n])
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bytes `i` of a test stream (`seed` tells the directions apart).
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// Writes `data` in sizes from 1 byte up, and gives the writer back.
async fn send<W: AsyncWrite + Unpin>(mut w: W, data: Vec<u8>) -> io::Result<W> {
    let mut at = 0;
    let mut size = 1;
    while at < data.len() {
        let end = (at + size).min(data.len());
        w.write_all(&data[at..end]).await?;
        at = end;
        size = size * 3 % 70_001 + 1;
    }
    Ok(w)
}

/// Reads `len` bytes, or to the end if `len` is `None`, in sizes that vary.
async fn receive(mut r: impl AsyncRead + Unpin, len: Option<usize>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 50_000];
    let mut size = 7;
    while len.is_none_or(|l| out.len() < l) {
        let want = len.map_or(size, |l| size.min(l - out.len()));
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        size = size * 5 % 49_999 + 1;
    }
    Ok(out)
}

#[tokio::test]
async fn copies_both_ways_in_order_through_destinations_that_take_little() {
    // The pipe's two ends (`a`, `b`) and the test's (`x`, `y`): x <-> a ~ b <-> y.
    let (x, a) = duplex(4096);
    let (y, b) = duplex(100);
    let stingy = |inner, max| Stingy {
        inner,
        max,
        flip: false,
        short: 0,
    };
    let (a, b) = (stingy(a, 1000), stingy(b, 7));
    let to_b = pattern(1, 300_000);
    let to_a = pattern(2, 200_000);
    let (xr, xw) = tokio::io::split(x);
    let (yr, yw) = tokio::io::split(y);
    let piped = tokio::spawn(async move {
        let (mut a, mut b) = (a, b);
        let r = Pipe::new(&mut a, &mut b).await;
        (r, a.short, b.short)
    });
    let sx = tokio::spawn(send(xw, to_b.clone()));
    let sy = tokio::spawn(send(yw, to_a.clone()));
    let ry = tokio::spawn(receive(yr, Some(to_b.len())));
    let got_a = receive(xr, Some(to_a.len())).await.unwrap();
    let got_b = ry.await.unwrap().unwrap();
    assert!(got_a == to_a, "b to a: the bytes differ");
    assert!(got_b == to_b, "a to b: the bytes differ");
    // Both ways done: the end of `x` ends the pipe cleanly.
    let _yw = sy.await.unwrap().unwrap();
    sx.await.unwrap().unwrap().shutdown().await.unwrap();
    let (r, a_short, b_short) = piped.await.unwrap();
    r.unwrap();
    // Both destinations cut writes short or turned them away, many times.
    assert!(a_short > 100 && b_short > 100, "{a_short} {b_short}");
}

#[tokio::test]
async fn each_direction_delivers_everything_before_its_end() {
    for (len_ab, len_ba) in [(0, 0), (1, 0), (70_000, 3), (250_000, 250_000)] {
        let (x, a) = duplex(1000);
        let (y, b) = duplex(1 << 20);
        let to_b = pattern(3, len_ab);
        let to_a = pattern(4, len_ba);
        let (xr, mut xw) = tokio::io::split(x);
        let (yr, mut yw) = tokio::io::split(y);
        let piped = tokio::spawn(pipe(a, b));
        // `y` writes first and all of it fits in the pipe's reach before `x` ends.
        yw.write_all(&to_a).await.unwrap();
        let got_a = {
            let mut got = vec![0u8; to_a.len()];
            let mut xr = xr;
            xr.read_exact(&mut got).await.unwrap();
            got
        };
        assert!(got_a == to_a);
        xw.write_all(&to_b).await.unwrap();
        xw.shutdown().await.unwrap();
        let got_b = receive(yr, None).await.unwrap();
        assert_eq!(got_b.len(), to_b.len(), "{len_ab} {len_ba}");
        assert!(got_b == to_b);
        assert!(piped.await.unwrap().is_none());
    }
}

#[test]
fn an_idle_direction_holds_no_buffer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Unconstrained: the pipe is polled by hand inside the test's task, with a waker that
    // does nothing, so Tokio's cooperative budget (which the duplex streams spend) must not
    // run out and turn a read with data waiting into a wait.
    rt.block_on(tokio::task::unconstrained(async {
        let (mut x, mut a) = duplex(1 << 20);
        let (mut y, mut b) = duplex(1000);
        let mut p = Pipe::new(&mut a, &mut b);
        let mut cx = Context::from_waker(Waker::noop());
        let data = pattern(5, 100_000);
        x.write_all(&data).await.unwrap();
        assert!(Pin::new(&mut p).poll(&mut cx).is_pending());
        // `b` took 1000 bytes of the first read: the rest waits on the heap.
        assert!(p.ab.buf.capacity() > 0 && !p.ab.is_empty());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while got.len() < data.len() {
            let n = y.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            assert!(Pin::new(&mut p).poll(&mut cx).is_pending());
        }
        assert!(got == data);
        // All written and the source has nothing more: no buffer either way.
        assert!(Pin::new(&mut p).poll(&mut cx).is_pending());
        assert_eq!(p.ab.buf.capacity(), 0);
        assert_eq!(p.ba.buf.capacity(), 0);
    }));
}

/// A destination that fails every write.
struct Broken;

impl AsyncRead for Broken {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Broken {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_destination_ends_the_pipe_with_its_error_and_closes_the_other_end() {
    let (mut x, a) = duplex(1000);
    let piped = tokio::spawn(pipe(a, Broken));
    x.write_all(b"hello").await.unwrap();
    let e = piped.await.unwrap().expect("an error");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    let mut rest = Vec::new();
    assert_eq!(x.read_to_end(&mut rest).await.unwrap(), 0);
}
