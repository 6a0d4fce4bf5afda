//! Footprint probe: the same runtime as `size_engine` (reset handler, vector table, panic
//! handler) and no engine, so the difference of the two `.text` sizes is the engine's.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    let mut buf = [0u8; 1500];
    loop {
        black_box(&mut buf);
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    cortex_m::asm::udf()
}
