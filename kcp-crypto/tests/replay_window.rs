//! `ReplayWindow` against the simplest model of its documented semantics: the set of
//! accepted sequence numbers and the highest of them.

use kcp_crypto::ReplayWindow;
use kcp_testkit::replay::{pick, Model};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn window_matches_the_set_model(ops in prop::collection::vec((any::<bool>(), any::<u8>(), any::<u16>()), 1..400)) {
        let mut w = ReplayWindow::new();
        let mut m = Model::new(ReplayWindow::SIZE);
        for (accept, how, delta) in ops {
            let s = pick(m.top, how, delta, ReplayWindow::SIZE);
            prop_assert_eq!(w.check(s), m.check(s), "check({})", s);
            if accept {
                w.accept(s);
                m.accept(s);
                prop_assert_eq!(w.top(), m.top);
            }
        }
        // Every number within the window agrees at the end.
        if let Some(top) = m.top {
            for s in top.saturating_sub(ReplayWindow::SIZE + 2)..=top.saturating_add(2) {
                prop_assert_eq!(w.check(s), m.check(s), "final check({})", s);
            }
        }
    }
}
