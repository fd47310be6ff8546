//! How a process's global limits are split between its torrents: plain
//! arithmetic, re-run every second by the node layer.
//!
//! - **Rates** are split max-min fair ("water-filling"): a torrent that
//!   used less than most of what it was allotted last period is given what
//!   it used plus headroom, and what it leaves goes to the torrents that
//!   are held back by their share. So one busy torrent can use the whole
//!   limit while the others idle, and two busy torrents get half each,
//!   whatever their peer counts.
//! - **Connections** are split equally: connections are long-lived, so a
//!   share taken back later would mean dropping peers.

/// A torrent's use of its rate share over the last period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDemand {
    /// Bytes per second it was allotted.
    pub allotted: u64,
    /// Bytes per second it moved.
    pub used: u64,
    /// Its own cap (a per-torrent limit), if any.
    pub cap: Option<u64>,
}

/// A torrent that used this much of its allotment is held back by it and
/// asks for more.
const SATURATED_PERCENT: u64 = 80;
/// Headroom over last period's use for a torrent that was not held back.
const HEADROOM_PERCENT: u64 = 25;

/// Splits `total` bytes per second between torrents. The result sums to at
/// most `total`; every torrent gets at least a small floor (an idle torrent
/// must be able to start), and none more than its own cap.
pub fn split_rate(total: u64, demands: &[RateDemand]) -> Vec<u64> {
    let n = demands.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    // An idle torrent keeps a floor so its first peers are not starved
    // while the next split catches up with it.
    let floor = (total / (4 * n)).max(1);
    let wants: Vec<u64> = demands
        .iter()
        .map(|d| {
            let held_back = d.used * 100 >= d.allotted * SATURATED_PERCENT;
            let want = if held_back {
                u64::MAX
            } else {
                (d.used + d.used * HEADROOM_PERCENT / 100).max(floor)
            };
            want.min(d.cap.unwrap_or(u64::MAX))
        })
        .collect();
    // Water-filling: the smallest wants are met first; each of the rest
    // gets an equal part of what is left.
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| wants[i]);
    let mut shares = vec![0; demands.len()];
    let mut left = total;
    for (k, &i) in order.iter().enumerate() {
        let equal = left / (n - k as u64);
        shares[i] = wants[i].min(equal);
        left -= shares[i];
    }
    // Everyone got what they want: the rest is spread over those without
    // a cap in the way, so a torrent that speeds up has room at once.
    if left > 0 {
        let open: Vec<usize> = (0..demands.len())
            .filter(|&i| demands[i].cap.is_none_or(|c| shares[i] < c))
            .collect();
        if !open.is_empty() {
            let each = left / open.len() as u64;
            for i in open {
                let room = demands[i].cap.map_or(u64::MAX, |c| c - shares[i]);
                shares[i] += each.min(room);
            }
        }
    }
    shares
}

/// Splits `total` connections between `n` torrents: equal parts, the
/// remainder to the first ones, at least one each (so more torrents than
/// `total` go past it by one connection each).
pub fn split_peers(total: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    (0..n)
        .map(|i| (total / n + usize::from(i < total % n)).max(1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(allotted: u64) -> RateDemand {
        RateDemand {
            allotted,
            used: allotted,
            cap: None,
        }
    }

    fn idle() -> RateDemand {
        RateDemand {
            allotted: 1000,
            used: 0,
            cap: None,
        }
    }

    #[test]
    fn two_busy_torrents_get_half_each() {
        assert_eq!(split_rate(1000, &[busy(900), busy(100)]), vec![500, 500]);
    }

    #[test]
    fn an_idle_torrent_leaves_its_share_to_a_busy_one_but_keeps_a_floor() {
        let s = split_rate(1000, &[busy(500), idle()]);
        assert_eq!(s[1], 125, "floor: a quarter of an equal share");
        assert_eq!(s[0], 875);
    }

    #[test]
    fn a_torrent_using_part_of_its_share_gets_that_plus_headroom() {
        let slow = RateDemand {
            allotted: 500,
            used: 200,
            cap: None,
        };
        let s = split_rate(1000, &[busy(500), slow]);
        assert_eq!(s[1], 250);
        assert_eq!(s[0], 750);
    }

    #[test]
    fn a_cap_holds_and_what_it_leaves_goes_to_the_others() {
        let capped = RateDemand {
            cap: Some(100),
            ..busy(500)
        };
        let s = split_rate(1000, &[capped, busy(500), busy(500)]);
        assert_eq!(s, vec![100, 450, 450]);
    }

    #[test]
    fn left_over_rate_is_spread_when_nobody_is_held_back() {
        let s = split_rate(1000, &[idle(), idle()]);
        assert_eq!(s, vec![500, 500]);
    }

    #[test]
    fn the_split_never_exceeds_the_total() {
        for n in 1..40u64 {
            let demands: Vec<RateDemand> = (0..n)
                .map(|i| RateDemand {
                    allotted: 100 + i * 37,
                    used: (i * 53) % 200,
                    cap: (i % 3 == 0).then_some(i * 11),
                })
                .collect();
            let s = split_rate(10_000, &demands);
            assert!(s.iter().sum::<u64>() <= 10_000, "{n}: {s:?}");
            for (d, share) in demands.iter().zip(&s) {
                assert!(d.cap.is_none_or(|c| *share <= c));
            }
        }
    }

    #[test]
    fn peers_split_equally_with_the_remainder_first_and_one_at_least() {
        assert_eq!(split_peers(50, 1), vec![50]);
        assert_eq!(split_peers(50, 3), vec![17, 17, 16]);
        assert_eq!(split_peers(2, 3), vec![1, 1, 1]);
        assert!(split_peers(7, 0).is_empty());
    }
}
