//! The effective expiry of a writ: the earliest time limit any of its blocks sets.
//!
//! The authority block says `expires_at(T)` and checks `time($t), $t <= T`; an attenuation may
//! add `check if time($t), $t <= T2` with an earlier `T2`. The writ stops working at the earliest
//! of them, so that is what [`inspect`](crate::inspect) shows and what a verifier names when it
//! refuses an expired writ.
//!
//! A limit is read only from a check of exactly the shape `check if time($t), $t <= DATE` (or
//! `$t < DATE`: one second earlier), with no scope annotation, in a block that has no block
//! scope and defines no `time` fact or rule of its own: such a check sees the verifier's one
//! `time(now)` fact and fails exactly when `now` is past the limit. Anything else is not read
//! as a limit (it still applies when a verifier runs it). Read straight from the protobuf
//! terms, as [`authority`](crate::authority) does: `time` is one of biscuit's default symbols,
//! so its id is the same in every block, and variables only need to be equal.

use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema::{
    self, op::Content as OpContent, op_binary::Kind as BinaryKind, term::Content,
};
use prost::Message;

/// The earliest time limit (seconds since the epoch) among all blocks, and the block setting
/// it (0 = authority; the first such block when several set the same limit). Blocks that
/// cannot be decoded are skipped: callers decode the token first.
pub(crate) fn earliest(container: &schema::Biscuit) -> Option<TimeLimit> {
    let time = SymbolTable::new().get("time")?;
    std::iter::once(&container.authority)
        .chain(&container.blocks)
        .enumerate()
        .filter_map(|(index, signed)| {
            let block = schema::Block::decode(signed.block.as_slice()).ok()?;
            let at = block_limit(&block, time)?;
            Some(TimeLimit { at, block: index })
        })
        .min_by_key(|limit| limit.at)
}

/// A time limit set by one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeLimit {
    /// Seconds since the epoch: valid up to and including this second.
    pub(crate) at: u64,
    /// The block that sets it (0 = authority).
    pub(crate) block: usize,
}

fn block_limit(block: &schema::Block, time: u64) -> Option<u64> {
    let defines_time = block
        .facts
        .iter()
        .map(|fact| &fact.predicate)
        .chain(block.rules.iter().map(|rule| &rule.head))
        .any(|predicate| predicate.name == time);
    if defines_time || !block.scope.is_empty() {
        return None;
    }
    block
        .checks
        .iter()
        .filter_map(|check| check_limit(check, time))
        .min()
}

/// `check if time($t), $t <= DATE` (or `<`), nothing more.
fn check_limit(check: &schema::Check, time: u64) -> Option<u64> {
    // Kind `One` (`check if`) is the default; `check all` and `reject if` are not limits here.
    if check.kind.unwrap_or(0) != schema::check::Kind::One as i32 {
        return None;
    }
    let [query] = check.queries.as_slice() else {
        return None;
    };
    let ([predicate], [expression], []) = (
        query.body.as_slice(),
        query.expressions.as_slice(),
        query.scope.as_slice(),
    ) else {
        return None;
    };
    let [
        schema::Term {
            content: Some(Content::Variable(bound)),
        },
    ] = predicate.terms.as_slice()
    else {
        return None;
    };
    if predicate.name != time {
        return None;
    }
    let [left, right, operator] = expression.ops.as_slice() else {
        return None;
    };
    let variable = matches!(
        &left.content,
        Some(OpContent::Value(schema::Term { content: Some(Content::Variable(v)) })) if v == bound
    );
    let Some(OpContent::Value(schema::Term {
        content: Some(Content::Date(date)),
    })) = &right.content
    else {
        return None;
    };
    let Some(OpContent::Binary(binary)) = &operator.content else {
        return None;
    };
    if !variable {
        None
    } else if binary.kind == BinaryKind::LessOrEqual as i32 {
        Some(*date)
    } else if binary.kind == BinaryKind::LessThan as i32 {
        Some(date.saturating_sub(1))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::builder::BlockBuilder;
    use biscuit_auth::{Biscuit, KeyPair};

    const AUTHORITY: &str = r#"writ(1); expires_at(2030-01-01T00:10:00Z);
        check if time($t), $t <= 2030-01-01T00:10:00Z;"#;

    fn limit_of(blocks: &[&str]) -> Option<TimeLimit> {
        limit_of_blocks(
            blocks
                .iter()
                .map(|code| BlockBuilder::new().code(*code).unwrap()),
        )
    }

    fn limit_of_blocks(blocks: impl IntoIterator<Item = BlockBuilder>) -> Option<TimeLimit> {
        let root = KeyPair::new();
        let mut token = Biscuit::builder()
            .code(AUTHORITY)
            .unwrap()
            .build(&root)
            .unwrap();
        for block in blocks {
            token = token.append(block).unwrap();
        }
        earliest(&token.container().to_proto())
    }

    fn secs(text: &str) -> u64 {
        humantime::parse_rfc3339(text)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn the_earliest_recognised_limit_wins() {
        assert_eq!(
            limit_of(&[]),
            Some(TimeLimit {
                at: secs("2030-01-01T00:10:00Z"),
                block: 0
            })
        );
        assert_eq!(
            limit_of(&[
                "check if time($t), $t <= 2030-01-01T00:05:00Z;",
                "check if time($t), $t < 2030-01-01T00:02:00Z;",
                "check if time($t), $t <= 2030-01-01T00:09:00Z;",
            ]),
            Some(TimeLimit {
                at: secs("2030-01-01T00:01:59Z"),
                block: 2
            })
        );
    }

    #[test]
    fn checks_that_are_not_plain_limits_are_not_read() {
        let authority = Some(TimeLimit {
            at: secs("2030-01-01T00:10:00Z"),
            block: 0,
        });
        for block in [
            // The block defines its own time: its check may pass whatever the clock says.
            "time(2000-01-01T00:00:00Z); check if time($t), $t <= 2030-01-01T00:01:00Z;",
            "time($t) <- operation($t); check if time($t), $t <= 2030-01-01T00:01:00Z;",
            "check if time($t), $t <= 2030-01-01T00:01:00Z or operation(\"read\");",
            "check if time($t), $t >= 2030-01-01T00:01:00Z;",
            "check all time($t), $t <= 2030-01-01T00:01:00Z;",
            "reject if time($t), $t <= 2030-01-01T00:01:00Z;",
            "check if time($t), operation($o), $t <= 2030-01-01T00:01:00Z;",
            "check if time($t), $u <= 2030-01-01T00:01:00Z, resource($u);",
            "check if time($t), $t <= 2030-01-01T00:01:00Z trusting previous;",
        ] {
            assert_eq!(limit_of(&[block]), authority, "{block}");
        }
        // A block-wide `trusting previous`: earlier blocks' time facts would count.
        let trusting_previous = BlockBuilder::new()
            .code("check if time($t), $t <= 2030-01-01T00:01:00Z;")
            .unwrap()
            .scope(biscuit_auth::builder::Scope::Previous);
        assert_eq!(limit_of_blocks([trusting_previous]), authority);
    }
}
