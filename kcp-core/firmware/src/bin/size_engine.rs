//! Footprint probe: every call an application makes on the no-allocator engine (the
//! counterparts of ikcp.c's public functions), on opaque inputs so nothing is folded away.
//! `.text` of this image minus that of `size_baseline` is the engine's code size; see
//! `footprint.sh`. Never run, only linked.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

use cortex_m_rt::entry;
use kcp_core::{Config, Kcp, Millis, StaticBuffers};

static mut MEM: StaticBuffers<32, 64, 96, 1376> = StaticBuffers::new();

#[entry]
fn main() -> ! {
    // SAFETY: the only reference to MEM, taken once before the loop.
    let mem = unsafe { &mut *core::ptr::addr_of_mut!(MEM) };
    let config: Config = black_box(Config::default());
    let Ok(mut kcp) = Kcp::with_buffers(black_box(1), config, Millis(0), mem.buffers()) else {
        cortex_m::asm::udf()
    };
    let mut buf = [0u8; 1500];
    loop {
        let now = Millis(black_box(0));
        let n = black_box(0usize).min(buf.len());
        let _ = kcp.handle_datagram(now, &buf[..n]);
        let _ = kcp.send(&buf[..black_box(1)]);
        let _ = black_box(kcp.peek_size());
        let _ = kcp.recv(&mut buf);
        if black_box(false) {
            let _ = kcp.reconfigure(black_box(config));
            kcp.flush();
        }
        kcp.handle_timeout(now);
        while let Some(n) = kcp.poll_transmit(now, &mut buf) {
            black_box(&buf[..n]);
        }
        black_box((kcp.poll_timeout(), kcp.wait_snd(), kcp.conv()));
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    cortex_m::asm::udf()
}
