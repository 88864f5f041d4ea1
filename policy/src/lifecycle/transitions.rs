//! Which moves between instance states are legal.

use arbiter_proto::InstanceState;

/// Whether an instance may move from `from` to `to`:
///
/// - `open → evaluating`: a round's evaluation begins;
/// - `evaluating → evaluating`: an interrupted evaluation resumes;
/// - `evaluating → open`: the next round opens, or a round that did not complete is given
///   back;
/// - `evaluating → evaluated`: the last round was evaluated;
/// - any state but `destroyed` `→ destroying`: destruction begins (again, after a crash);
/// - `destroying → destroyed`: destruction finished;
/// - `open`, `evaluating`, `evaluated` `→ destroyed`: an epoch reset gives up an
///   instance whose secret was already lost.
///
/// Nothing leaves `destroyed`.
pub fn transition_allowed(from: InstanceState, to: InstanceState) -> bool {
    use InstanceState::{Destroyed, Destroying, Evaluated, Evaluating, Open};
    match (from, to) {
        (Open, Evaluating) | (Evaluating, Evaluating | Open | Evaluated) => true,
        (Destroyed, _) => false,
        (_, Destroying) => true,
        (Destroying, Destroyed) => true,
        (Open | Evaluating | Evaluated, Destroyed) => true,
        _ => false,
    }
}
