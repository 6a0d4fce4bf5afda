//! kcp-core, kcp-crypto and kcp-fec on a Cortex-M4 (QEMU's `mps2-an386`).
//!
//! Two engines on static buffers talk over a deterministic simulated link that loses and
//! reorders datagrams. Three runs move 256 KiB each, every byte checked at the receiver:
//!
//! 1. `kcp`: the bare engine, no codec;
//! 2. `kcp+crypt`: kcp-go's packet cipher (`aes-128`: AES-CFB, 16-byte nonce, CRC-32);
//! 3. `kcp+fec+crypt`: FEC 10/3 inside the cipher, kcp-go's order. Only this run touches the
//!    heap (a fixed 64 KiB region in `.bss`): the engine and the cipher never allocate, which
//!    the firmware checks.
//!
//! Counters and on-target figures (cycles per delivered KiB, stack high-water mark, static
//! RAM, `.text`) go out over semihosting; the exit status is 0 only if every byte arrived
//! intact and every check passed. `run.sh` beside this crate builds it, boots it under QEMU
//! and checks the status and the report.
#![no_std]
#![no_main]
#![deny(missing_docs)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ops::Range;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{DWT, SYST};
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap;
use kcp_core::{Codec, Config, Kcp, Millis, RecvError, StaticBuffers};
use kcp_crypto::{BlockCrypt, CipherKind, PacketCrypt, PacketKey, Pass};
use kcp_fec::{Fec, FecConfig};

mod link;
mod side;

use link::Link;
use side::Side;

/// Bytes each run moves.
const TOTAL: usize = 256 * 1024;
/// Largest datagram on the simulated link (codec headers included).
const MTU: usize = 548;
/// Room the codecs need in front of the KCP datagram: crypto 20, FEC 8.
const CRYPT_ROOM: usize = kcp_crypto::HEADER_LEN;
const FEC_ROOM: usize = kcp_fec::HEADER_LEN;
/// Payload chunk: the largest MSS of the three runs (no codec: `MTU - 24`).
const CHUNK: usize = MTU - 24;
const WND: u32 = 32;
/// Send slots, receive slots (twice the receive window), payload chunks.
type Mem = StaticBuffers<{ WND as usize }, { 2 * WND as usize }, { 3 * WND as usize }, CHUNK>;
/// Datagrams the link holds per direction (more are dropped, as a full router queue does).
const LINK_SLOTS: usize = 40;
/// Loss per direction, in 1/65536: about 3 %.
const LOSS: u32 = 2000;
/// One-way delay: 20 ms plus up to 15 ms of jitter, enough to reorder back-to-back datagrams.
const DELAY_MS: u32 = 20;
const JITTER_MS: u32 = 16;
/// Give up (and fail) when a run has not finished after this much simulated time.
const SIM_LIMIT_MS: u32 = 600_000;
/// The FEC run's heap.
const HEAP_BYTES: usize = 64 * 1024;
/// Stack paint pattern.
const PAINT: u32 = 0x5AA5_C33C;

// ----------------------------------------------------------------------------------------------
// Heap: LlffHeap with a peak counter. Only the FEC run may use it.

struct CountingHeap {
    heap: LlffHeap,
    used: AtomicUsize,
    peak: AtomicUsize,
    allocs: AtomicUsize,
}

// SAFETY: forwards to LlffHeap (a GlobalAlloc) and only adds counters.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds GlobalAlloc's contract, which we pass on unchanged.
        let p = unsafe { self.heap.alloc(layout) };
        if !p.is_null() {
            let now = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(now, Ordering::Relaxed);
            self.allocs.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
    allocs: AtomicUsize::new(0),
};

/// A static cell handed out once (the firmware is single-threaded; no interrupt touches it).
struct Once<T>(UnsafeCell<T>, AtomicU32);
// SAFETY: `take` hands out the one `&mut` at most once.
unsafe impl<T> Sync for Once<T> {}
impl<T> Once<T> {
    const fn new(v: T) -> Self {
        Once(UnsafeCell::new(v), AtomicU32::new(0))
    }
    // Sound: the flag hands the `&mut` out once (what `cortex_m::singleton!` does, without
    // building the value on the stack first).
    #[allow(clippy::mut_from_ref)]
    fn take(&'static self) -> &'static mut T {
        assert_eq!(self.1.swap(1, Ordering::AcqRel), 0, "taken twice");
        // SAFETY: the flag above makes this the only reference ever created.
        unsafe { &mut *self.0.get() }
    }
}

static HEAP_MEM: Once<[u8; HEAP_BYTES]> = Once::new([0; HEAP_BYTES]);
static MEM_A: Once<Mem> = Once::new(Mem::new());
static MEM_B: Once<Mem> = Once::new(Mem::new());
/// The cipher's key schedule and nonce key, built once; each layer holds a reference and a
/// nonce stream of its own (a `PacketCrypt` that owned its key would carry the schedule of the
/// largest cipher, about 4.5 KiB, on the stack).
static KEY: Once<Option<PacketKey>> = Once::new(None);
// Zero-initialised, so in .bss (each run seeds its links).
static LINKS: Once<[Link; 2]> = Once::new([Link::new(0), Link::new(0)]);

// ----------------------------------------------------------------------------------------------
// Cycle counting: the DWT cycle counter when the core model has one, else SysTick driven by
// QEMU's -icount virtual clock, calibrated against a loop of known instruction count.

static SYST_WRAPS: AtomicU32 = AtomicU32::new(0);
const SYST_RELOAD: u32 = 0x00FF_FFFF;

#[exception]
fn SysTick() {
    SYST_WRAPS.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy)]
enum Clock {
    Dwt,
    /// SysTick ticks, scaled by instructions per tick (times 1000) from the calibration.
    SysTick {
        milli_per_tick: u64,
    },
}

impl Clock {
    fn now(self) -> u64 {
        match self {
            Clock::Dwt => u64::from(DWT::cycle_count()),
            Clock::SysTick { milli_per_tick } => systick_ticks() * milli_per_tick / 1000,
        }
    }
}

fn systick_ticks() -> u64 {
    loop {
        let c1 = SYST::get_current();
        let w = SYST_WRAPS.load(Ordering::Acquire);
        let c2 = SYST::get_current();
        // The counter counts down: a reload between the reads shows as c2 > c1; so does an
        // expired period whose exception has not run yet. Read again in both cases.
        if c2 <= c1 && !cortex_m::peripheral::SCB::is_pendst_pending() {
            return u64::from(w) * u64::from(SYST_RELOAD + 1) + u64::from(SYST_RELOAD - c2);
        }
        cortex_m::asm::nop();
    }
}

/// Runs exactly `2 * n + 2` instructions (a two-instruction countdown loop).
#[inline(never)]
fn known_loop(n: u32) {
    // SAFETY: only clobbers the scratch register it declares.
    unsafe {
        core::arch::asm!(
            "1:",
            "subs {0}, {0}, #1",
            "bne 1b",
            inout(reg) n => _,
            options(nomem, nostack),
        );
    }
}

/// Picks and calibrates the cycle source.
fn clock_setup(cp: &mut cortex_m::Peripherals) -> (Clock, &'static str) {
    cp.DCB.enable_trace();
    if DWT::has_cycle_counter() {
        cp.DWT.enable_cycle_counter();
        let a = DWT::cycle_count();
        known_loop(1000);
        let b = DWT::cycle_count();
        if b != a {
            return (Clock::Dwt, "DWT CYCCNT cycles");
        }
    }
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(SYST_RELOAD);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();
    // The counter reads 0 until its first reload.
    while SYST::get_current() == 0 {}
    let n = 2_000_000u32;
    let t0 = systick_ticks();
    known_loop(n);
    let t1 = systick_ticks();
    let ticks = t1.saturating_sub(t0).max(1);
    let milli_per_tick = (u64::from(2 * n + 2) * 1000 + ticks / 2) / ticks;
    (
        Clock::SysTick { milli_per_tick },
        "instructions (no DWT CYCCNT in this model: SysTick on QEMU's -icount clock, calibrated)",
    )
}

// ----------------------------------------------------------------------------------------------
// The byte stream: byte `i` is a function of `i` alone, so the receiver checks every byte.

fn pattern(i: usize, seed: u32) -> u8 {
    let mut x = (i as u32 / 4) ^ seed;
    x = (x ^ (x >> 16)).wrapping_mul(0x7FEB_352D);
    x = (x ^ (x >> 15)).wrapping_mul(0x846C_A68B);
    x ^= x >> 16;
    (x >> (8 * (i % 4))) as u8
}

/// Deterministic nonce seed for the cipher (a device would seed from its TRNG).
struct SeedRng(u64);
impl rand_core::TryRng for SeedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Ok(self.0 ^ (self.0 >> 29))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for b in dst {
            *b = (self.try_next_u64()? >> 56) as u8;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for SeedRng {}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    Plain,
    Crypt,
    FecCrypt,
}

#[derive(Default)]
struct RunReport {
    delivered: usize,
    mismatches: usize,
    sim_ms: u32,
    cycles: u64,
    /// Cycles spent generating and checking the test bytes (not the stack's work).
    app_cycles: u64,
    datagrams: u32,
    lost: u32,
    queue_drops: u32,
    reordered: u32,
    retransmits: u64,
    recovered: u32,
    codec_errors: u32,
    crypt_opened: u64,
    crypt_errors: u64,
    fec_recovered: u64,
    heap_peak: usize,
    stalled: bool,
}

fn config(room: usize) -> Config {
    Config {
        mtu: MTU as u32,
        snd_wnd: WND,
        rcv_wnd: WND,
        stream: true,
        header_room: room as u32,
        ..Config::fast3()
    }
}

fn make_side<'a>(stack: Stack, mem: &'a mut Mem, key: &'static PacketKey) -> Side<'a> {
    let crypt = (stack != Stack::Plain).then(|| PacketCrypt::with_key(key));
    let fec = (stack == Stack::FecCrypt).then(|| {
        let mut cfg = FecConfig::default();
        cfg.queue_bytes = 16 * 1024;
        Fec::with_config(10, 3, cfg).expect("FEC 10/3")
    });
    let room = crypt.as_ref().map_or(0, |_| CRYPT_ROOM) + fec.as_ref().map_or(0, |_| FEC_ROOM);
    let kcp = Kcp::with_buffers(0x4B43_5021, config(room), Millis(0), mem.buffers())
        .expect("engine on static buffers");
    Side {
        kcp,
        fec,
        crypt,
        codec_errors: 0,
        recovered_in: 0,
    }
}

fn run(
    stack: Stack,
    mem_a: &mut Mem,
    mem_b: &mut Mem,
    links: &mut [Link; 2],
    key: &'static PacketKey,
    clock: Clock,
    seed: u32,
) -> RunReport {
    let [ab, ba] = links;
    ab.reset(seed ^ 0x1111_1111);
    ba.reset(seed ^ 0x2222_2222);
    let heap_before = HEAP.used.load(Ordering::Relaxed);
    HEAP.peak.store(heap_before, Ordering::Relaxed);

    let t0 = clock.now();
    let mut a = make_side(stack, mem_a, key);
    let mut b = make_side(stack, mem_b, key);
    let mut rep = RunReport::default();
    let mut sent = 0usize;
    let mut chunk = [0u8; 1024];
    let mut out = [0u8; 2048];
    let mut now = 0u32;
    while rep.delivered < TOTAL {
        // Sender: queue what fits.
        while sent < TOTAL {
            let k = (TOTAL - sent).min(chunk.len());
            let g0 = clock.now();
            for (j, byte) in chunk[..k].iter_mut().enumerate() {
                *byte = pattern(sent + j, seed);
            }
            rep.app_cycles += clock.now() - g0;
            match a.kcp.send(&chunk[..k]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        a.kcp.handle_timeout(Millis(now));
        a.transmit(now, ab);
        while let Some(i) = ab.pop_due(now) {
            let n = usize::from(ab.len[i]);
            b.receive(now, &mut ab.data[i][..n]);
        }
        loop {
            match b.kcp.recv(&mut out) {
                Ok(n) => {
                    let c0 = clock.now();
                    for (j, &byte) in out[..n].iter().enumerate() {
                        if byte != pattern(rep.delivered + j, seed) {
                            rep.mismatches += 1;
                        }
                    }
                    rep.delivered += n;
                    rep.app_cycles += clock.now() - c0;
                }
                Err(RecvError::WouldBlock) => break,
                // A message too large for the buffer, or any other refusal: a failed run.
                Err(_) => {
                    rep.mismatches += 1;
                    break;
                }
            }
        }
        b.kcp.handle_timeout(Millis(now));
        b.transmit(now, ba);
        while let Some(i) = ba.pop_due(now) {
            let n = usize::from(ba.len[i]);
            a.receive(now, &mut ba.data[i][..n]);
        }
        if rep.delivered >= TOTAL {
            break;
        }
        // Next event: a datagram due or an engine timer; at least one millisecond on.
        let next = [
            ab.next_due(),
            ba.next_due(),
            a.kcp.poll_timeout().map(|m| m.0),
            b.kcp.poll_timeout().map(|m| m.0),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            rep.stalled = true;
            break;
        };
        now = next.max(now + 1);
        if now > SIM_LIMIT_MS {
            rep.stalled = true;
            break;
        }
    }
    rep.cycles = clock.now() - t0;
    rep.sim_ms = now;
    rep.datagrams = ab.sent + ba.sent;
    rep.lost = ab.lost + ba.lost;
    rep.queue_drops = ab.overflow + ba.overflow;
    rep.reordered = ab.reordered + ba.reordered;
    rep.retransmits = a.kcp.stats().retrans_segs;
    rep.recovered = b.recovered_in + a.recovered_in;
    rep.codec_errors = a.codec_errors + b.codec_errors;
    if let Some(c) = b.crypt.as_ref() {
        rep.crypt_opened = c.stats().opened;
        rep.crypt_errors = c.stats().integrity_errors;
    }
    if let Some(f) = b.fec.as_ref() {
        rep.fec_recovered = f.stats().recovered;
    }
    drop(a);
    drop(b);
    rep.heap_peak = HEAP.peak.load(Ordering::Relaxed) - heap_before;
    rep
}

// ----------------------------------------------------------------------------------------------

extern "C" {
    static __stext: u32;
    static __etext: u32;
    static __srodata: u32;
    static __erodata: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __sheap: u32;
    static _stack_start: u32;
}

fn addr(s: &u32) -> usize {
    s as *const u32 as usize
}

/// Paints the unused stack (from the end of the statics to just below the current frame).
#[inline(never)]
fn paint_stack() {
    let lo = addr(unsafe { &__sheap });
    let sp = cortex_m::register::msp::read() as usize;
    let hi = sp.saturating_sub(256) & !3;
    let mut p = lo;
    while p < hi {
        // SAFETY: [lo, hi) lies between the end of the statics and the live stack.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used: from the top down to the lowest word no longer painted.
fn stack_high_water() -> usize {
    let lo = addr(unsafe { &__sheap });
    let top = addr(unsafe { &_stack_start });
    let mut p = lo;
    // SAFETY: reads words between the statics and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

#[entry]
fn main() -> ! {
    paint_stack();
    let mut cp = cortex_m::Peripherals::take().expect("core peripherals");
    let (clock, clock_name) = clock_setup(&mut cp);

    let heap_mem = HEAP_MEM.take();
    // SAFETY: the region is a static used by nothing else, handed over once.
    unsafe { HEAP.heap.init(heap_mem.as_mut_ptr() as usize, HEAP_BYTES) };
    let mem_a = MEM_A.take();
    let mem_b = MEM_B.take();
    let links = LINKS.take();

    hprintln!("kcp firmware: mps2-an386 (Cortex-M4F), thumbv7em-none-eabihf");
    hprintln!(
        "link: {}% loss per direction, {}..{} ms one-way delay (reorders), {} slots; mtu {}, wnd {}",
        LOSS * 100 / 65536,
        DELAY_MS,
        DELAY_MS + JITTER_MS - 1,
        LINK_SLOTS,
        MTU,
        WND
    );
    // kcptun's --crypt aes-128 --key "kcp firmware test key".
    let pass = Pass::derive(b"kcp firmware test key");
    let mut rng = SeedRng(0x9E37_79B9_7F4A_7C15);
    let key: &'static PacketKey = KEY.take().insert(PacketKey::new(
        BlockCrypt::from_pass(CipherKind::Aes128, &pass),
        &mut rng,
    ));
    let mut ok = true;
    let mut max_stack = stack_high_water();
    hprintln!(
        "stack before the runs (key derivation included): {}",
        max_stack
    );
    let runs = [
        ("kcp", Stack::Plain),
        ("kcp+crypt(aes-128)", Stack::Crypt),
        ("kcp+fec(10/3)+crypt(aes-128)", Stack::FecCrypt),
    ];
    for (i, (name, stack)) in runs.into_iter().enumerate() {
        paint_stack();
        let rep = run(
            stack,
            mem_a,
            mem_b,
            links,
            key,
            clock,
            0xC0FF_EE00 + i as u32,
        );
        let stack_used = stack_high_water();
        max_stack = max_stack.max(stack_used);
        let kib = (rep.delivered / 1024).max(1) as u64;
        hprintln!(
            "run {}: delivered={} mismatches={} stalled={} sim_ms={} datagrams={} lost={} queue_drops={} reordered={} retransmits={} fec_recovered={} codec_errors={} crypt_opened={} crypt_integrity_errors={} heap_peak={} stack={} cycles={} cycles_per_kib={} app_cycles={} stack_cycles_per_kib={}",
            name,
            rep.delivered,
            rep.mismatches,
            rep.stalled,
            rep.sim_ms,
            rep.datagrams,
            rep.lost,
            rep.queue_drops,
            rep.reordered,
            rep.retransmits,
            rep.fec_recovered,
            rep.codec_errors,
            rep.crypt_opened,
            rep.crypt_errors,
            rep.heap_peak,
            stack_used,
            rep.cycles,
            rep.cycles / kib,
            rep.app_cycles,
            (rep.cycles - rep.app_cycles) / kib
        );
        let run_ok = rep.delivered == TOTAL
            && rep.mismatches == 0
            && !rep.stalled
            && rep.lost > 0
            && rep.reordered > 0
            && rep.codec_errors == 0
            && match stack {
                // The engine and the cipher must not touch the heap.
                Stack::Plain | Stack::Crypt => rep.heap_peak == 0,
                // FEC must have rebuilt some of the lost datagrams.
                Stack::FecCrypt => rep.fec_recovered > 0,
            };
        if !run_ok {
            hprintln!("run {}: FAILED", name);
        }
        ok &= run_ok;
    }

    let text = addr(unsafe { &__etext }) - addr(unsafe { &__stext });
    let rodata = addr(unsafe { &__erodata }) - addr(unsafe { &__srodata });
    let data = addr(unsafe { &__edata }) - addr(unsafe { &__sdata });
    let bss = addr(unsafe { &__ebss }) - addr(unsafe { &__sbss });
    let statics = addr(unsafe { &__sheap }) - addr(unsafe { &__sdata });
    hprintln!("cycle source: {}", clock_name);
    if let Clock::SysTick { milli_per_tick } = clock {
        hprintln!(
            "calibration: {}.{:03} instructions per SysTick tick",
            milli_per_tick / 1000,
            milli_per_tick % 1000
        );
    }
    hprintln!(
        "memory: text={} rodata={} data={} bss={} static_ram={} (of which heap={}, engine buffers={}x2, link={}x2) stack_high_water={} heap_allocs={}",
        text,
        rodata,
        data,
        bss,
        statics,
        HEAP_BYTES,
        core::mem::size_of::<Mem>(),
        core::mem::size_of::<Link>(),
        max_stack,
        HEAP.allocs.load(Ordering::Relaxed)
    );
    // A stack that reached the statics has overwritten them: nothing above can be trusted.
    let stack_room = addr(unsafe { &_stack_start }) - addr(unsafe { &__sheap });
    if max_stack + 64 >= stack_room {
        hprintln!(
            "stack: {} of {} bytes used: overflow",
            max_stack,
            stack_room
        );
        ok = false;
    }
    hprintln!(
        "sizes: Kcp={} PacketCrypt<&PacketKey>={} PacketKey={} Fec={} StaticBuffers={}",
        core::mem::size_of::<Kcp>(),
        core::mem::size_of::<PacketCrypt<&PacketKey>>(),
        core::mem::size_of::<PacketKey>(),
        core::mem::size_of::<Fec>(),
        core::mem::size_of::<Mem>()
    );
    if ok {
        hprintln!("RESULT: PASS");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("RESULT: FAIL");
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
