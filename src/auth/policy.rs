//! IAM-style identity policies attached to access keys.
//!
//! Semantics (a deliberate subset of IAM policy evaluation):
//! - A policy is a list of statements, each with an `Effect` (`Allow` or `Deny`), one or
//!   more `Action` patterns and one or more `Resource` patterns.
//! - A statement *matches* a request when any of its actions matches the requested
//!   action AND any of its resources matches the requested resource.
//! - Evaluation: if any matching statement is `Deny`, the request is denied (explicit deny
//!   always wins); otherwise if any matching statement is `Allow`, it is allowed;
//!   otherwise it is denied (default deny). A key with no statements may do nothing.
//! - Action patterns are `service:Name` globs compared case-insensitively:
//!   `kinesisvideo:*`, `kinesisvideo:Get*`, `kinesisvideo:DescribeSignalingChannel`, or
//!   `*` for every action.
//! - Resource patterns are ARN globs compared case-sensitively; `*` matches any run of
//!   characters (including `:` and `/`) and `?` exactly one character. `*` alone matches
//!   everything, including the `*` resource of operations that act on no single resource
//!   (e.g. `ListSignalingChannels`, which is authorized against `*` like IAM does, so
//!   only a resource pattern that matches the literal `*` allows it).
//! - Conditions, `NotAction`, `NotResource` and principals are not supported.
//! - Root keys bypass policies entirely (see `Principal::is_allowed`).

use serde::Deserialize;

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    /// Grants the matching actions.
    #[serde(alias = "allow")]
    Allow,
    /// Refuses the matching actions, whatever else allows them.
    #[serde(alias = "deny")]
    Deny,
}

/// Outcome of evaluating a policy for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A `Deny` statement matches.
    ExplicitDeny,
    /// No statement matches.
    ImplicitDeny,
}

/// A string or a list of strings (IAM accepts both for `Action` and `Resource`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// A statement as written in a credentials file (`[[key.statement]]`); field names are
/// accepted in lowercase (TOML style) or IAM JSON capitalization.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementSpec {
    /// Optional statement id, for the operator's own reference.
    #[serde(default, alias = "Sid")]
    pub sid: Option<String>,
    /// `Allow` or `Deny`.
    #[serde(alias = "Effect")]
    pub effect: Effect,
    /// Action pattern(s).
    #[serde(alias = "Action")]
    pub action: OneOrMany,
    /// Resource ARN pattern(s).
    #[serde(alias = "Resource")]
    pub resource: OneOrMany,
}

/// Why a statement is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `action = []`.
    #[error("statement #{statement}: action list is empty")]
    NoAction {
        /// 1-based statement number within the key.
        statement: usize,
    },
    /// `resource = []`.
    #[error("statement #{statement}: resource list is empty")]
    NoResource {
        /// 1-based statement number within the key.
        statement: usize,
    },
    /// An action that is neither `*` nor `service:pattern`.
    #[error(
        "statement #{statement}: action '{action}' must be '*' or '<service>:<Action pattern>' (e.g. 'kinesisvideo:Describe*')"
    )]
    BadAction {
        /// 1-based statement number within the key.
        statement: usize,
        /// The offending action.
        action: String,
    },
    /// An empty resource string.
    #[error("statement #{statement}: resource must not be empty (use '*' for every resource)")]
    EmptyResource {
        /// 1-based statement number within the key.
        statement: usize,
    },
}

/// A `*` / `?` wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    chars: Vec<char>,
    ignore_case: bool,
}

impl Pattern {
    /// A case-sensitive pattern (resources).
    pub fn case_sensitive(text: &str) -> Self {
        Self { chars: text.chars().collect(), ignore_case: false }
    }

    /// A case-insensitive pattern (actions).
    pub fn case_insensitive(text: &str) -> Self {
        Self { chars: text.chars().flat_map(char::to_lowercase).collect(), ignore_case: true }
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> =
            if self.ignore_case { text.chars().flat_map(char::to_lowercase).collect() } else { text.chars().collect() };
        glob(&self.chars, &text)
    }
}

/// Linear-time wildcard matching with single-star backtracking (no regex, no blowup).
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// One validated statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    effect: Effect,
    actions: Vec<Pattern>,
    resources: Vec<Pattern>,
}

impl Statement {
    /// Validate a statement from the file; `number` (1-based) is used in errors.
    pub fn from_spec(spec: StatementSpec, number: usize) -> Result<Self, PolicyError> {
        let actions = spec.action.into_vec();
        let resources = spec.resource.into_vec();
        if actions.is_empty() {
            return Err(PolicyError::NoAction { statement: number });
        }
        if resources.is_empty() {
            return Err(PolicyError::NoResource { statement: number });
        }
        for action in &actions {
            let valid = action == "*"
                || action.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty() && !name.is_empty() && !service.contains(['*', '?']) && !name.contains(':')
                });
            if !valid {
                return Err(PolicyError::BadAction { statement: number, action: action.clone() });
            }
        }
        if resources.iter().any(String::is_empty) {
            return Err(PolicyError::EmptyResource { statement: number });
        }
        Ok(Self {
            effect: spec.effect,
            actions: actions.iter().map(|a| Pattern::case_insensitive(a)).collect(),
            resources: resources.iter().map(|r| Pattern::case_sensitive(r)).collect(),
        })
    }

    /// Build directly (tests, programmatic policies).
    pub fn new(effect: Effect, actions: &[&str], resources: &[&str]) -> Self {
        Self {
            effect,
            actions: actions.iter().map(|a| Pattern::case_insensitive(a)).collect(),
            resources: resources.iter().map(|r| Pattern::case_sensitive(r)).collect(),
        }
    }

    fn matches(&self, action: &str, resource: &str) -> bool {
        self.actions.iter().any(|a| a.matches(action)) && self.resources.iter().any(|r| r.matches(resource))
    }
}

/// The statements attached to one access key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

impl Policy {
    /// A policy from validated statements.
    pub fn new(statements: Vec<Statement>) -> Self {
        Self { statements }
    }

    /// Validate the statements of one key (numbered from 1 in errors).
    pub fn from_specs(specs: Vec<StatementSpec>) -> Result<Self, PolicyError> {
        let statements =
            specs.into_iter().enumerate().map(|(i, s)| Statement::from_spec(s, i + 1)).collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// Whether the policy has no statements (denies everything).
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Whether `action` may be allowed on *some* resource: an `Allow` statement names it and
    /// no `Deny` statement refuses it on every resource. `false` means every call of the
    /// action is refused whatever it names, so the edge can refuse it before any quota or
    /// lookup.
    pub fn may_allow(&self, action: &str) -> bool {
        let names = |s: &Statement| s.actions.iter().any(|a| a.matches(action));
        let everywhere = |s: &Statement| s.resources.iter().any(|r| r.chars.iter().all(|&c| c == '*'));
        let denied_everywhere = self.statements.iter().any(|s| s.effect == Effect::Deny && names(s) && everywhere(s));
        !denied_everywhere && self.statements.iter().any(|s| s.effect == Effect::Allow && names(s))
    }

    /// Evaluate `action` (e.g. `kinesisvideo:CreateStream`) on `resource` (an ARN or `*`).
    pub fn evaluate(&self, action: &str, resource: &str) -> Decision {
        let mut allowed = false;
        for statement in self.statements.iter().filter(|s| s.matches(action, resource)) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed { Decision::Allow } else { Decision::ImplicitDeny }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAM: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/cam-1/1700000000000";
    const DOOR: &str = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/door/1700000000001";

    fn spec(toml_text: &str) -> StatementSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn glob_basics() {
        let p = Pattern::case_sensitive;
        assert!(p("*").matches(""));
        assert!(p("*").matches("anything/at:all"));
        assert!(p("a?c").matches("abc"));
        assert!(!p("a?c").matches("ac"));
        assert!(p("arn:aws:kinesisvideo:*:*:channel/cam-*").matches(CAM));
        assert!(!p("arn:aws:kinesisvideo:*:*:channel/cam-*").matches(DOOR));
        assert!(p("*cam-1*").matches(CAM));
        assert!(p("a*b*c").matches("aXXbYYbc"));
        assert!(!p("a*b*c").matches("aXXbYYb"));
        assert!(!p("ARN:*").matches(CAM), "resources are case-sensitive");
        assert!(p("?").matches("é"), "? matches one character, not one byte");
    }

    #[test]
    fn actions_are_case_insensitive_globs() {
        let s = Statement::new(Effect::Allow, &["kinesisvideo:Get*"], &["*"]);
        assert!(s.matches("kinesisvideo:GetSignalingChannelEndpoint", "*"));
        assert!(s.matches("KinesisVideo:getdataendpoint", "*"));
        assert!(!s.matches("kinesisvideo:DescribeStream", "*"));
        let all = Statement::new(Effect::Allow, &["*"], &["*"]);
        assert!(all.matches("kinesisvideo:DeleteStream", CAM));
        let svc = Statement::new(Effect::Allow, &["kinesisvideo:*"], &["*"]);
        assert!(svc.matches("kinesisvideo:ConnectAsMaster", CAM));
        assert!(!svc.matches("s3:GetObject", CAM));
    }

    #[test]
    fn explicit_deny_wins_and_default_denies() {
        let policy = Policy::new(vec![
            Statement::new(Effect::Allow, &["kinesisvideo:*"], &["*"]),
            Statement::new(Effect::Deny, &["kinesisvideo:Delete*"], &["arn:aws:kinesisvideo:*:*:channel/cam-*"]),
        ]);
        assert_eq!(policy.evaluate("kinesisvideo:DeleteSignalingChannel", CAM), Decision::ExplicitDeny);
        assert_eq!(policy.evaluate("kinesisvideo:DeleteSignalingChannel", DOOR), Decision::Allow);
        assert_eq!(policy.evaluate("kinesisvideo:DescribeSignalingChannel", CAM), Decision::Allow);
        assert_eq!(Policy::default().evaluate("kinesisvideo:ListStreams", "*"), Decision::ImplicitDeny);
        let narrow = Policy::new(vec![Statement::new(
            Effect::Allow,
            &["kinesisvideo:Describe*"],
            &["arn:aws:kinesisvideo:*:*:channel/cam-*"],
        )]);
        assert_eq!(narrow.evaluate("kinesisvideo:DescribeSignalingChannel", DOOR), Decision::ImplicitDeny);
        assert_eq!(narrow.evaluate("kinesisvideo:ListSignalingChannels", "*"), Decision::ImplicitDeny);
    }

    #[test]
    fn may_allow_ignores_resources_but_honours_a_deny_everywhere() {
        let narrow = Policy::new(vec![Statement::new(
            Effect::Allow,
            &["kinesisvideo:Describe*"],
            &["arn:aws:kinesisvideo:*:*:channel/cam-*"],
        )]);
        assert!(narrow.may_allow("kinesisvideo:DescribeSignalingChannel"));
        assert!(!narrow.may_allow("kinesisvideo:DeleteSignalingChannel"));
        assert!(!Policy::default().may_allow("kinesisvideo:ListStreams"));
        let denied = Policy::new(vec![
            Statement::new(Effect::Allow, &["kinesisvideo:*"], &["*"]),
            Statement::new(Effect::Deny, &["kinesisvideo:Delete*"], &["*"]),
            Statement::new(Effect::Deny, &["kinesisvideo:Update*"], &["arn:aws:kinesisvideo:*:*:channel/cam-*"]),
        ]);
        assert!(!denied.may_allow("kinesisvideo:DeleteStream"));
        assert!(denied.may_allow("kinesisvideo:UpdateSignalingChannel"), "denied on some resources only");
    }

    #[test]
    fn statement_specs_parse_in_both_spellings() {
        let lower = spec(
            "effect = \"Allow\"\naction = [\"kinesisvideo:ConnectAsMaster\", \"kinesisvideo:Describe*\"]\nresource = \"arn:aws:kinesisvideo:*:*:channel/cam-*\"",
        );
        let st = Statement::from_spec(lower, 1).unwrap();
        assert!(st.matches("kinesisvideo:ConnectAsMaster", CAM));
        let iam = spec("Sid = \"x\"\nEffect = \"Deny\"\nAction = \"*\"\nResource = [\"*\"]");
        let st = Statement::from_spec(iam, 1).unwrap();
        assert_eq!(st.effect, Effect::Deny);
        assert!(toml::from_str::<StatementSpec>("effect = \"Maybe\"\naction = \"*\"\nresource = \"*\"").is_err());
        assert!(
            toml::from_str::<StatementSpec>("effect = \"Allow\"\naction = \"*\"\nresource = \"*\"\ncondition = 1")
                .is_err()
        );
        assert!(toml::from_str::<StatementSpec>("effect = \"Allow\"\naction = \"*\"").is_err(), "resource is required");
    }

    #[test]
    fn invalid_statements_are_refused() {
        let bad = |t: &str| Statement::from_spec(spec(t), 3).unwrap_err();
        assert_eq!(bad("effect = \"Allow\"\naction = []\nresource = \"*\""), PolicyError::NoAction { statement: 3 });
        assert_eq!(bad("effect = \"Allow\"\naction = \"*\"\nresource = []"), PolicyError::NoResource { statement: 3 });
        assert_eq!(
            bad("effect = \"Allow\"\naction = \"DescribeStream\"\nresource = \"*\""),
            PolicyError::BadAction { statement: 3, action: "DescribeStream".into() }
        );
        assert_eq!(
            bad("effect = \"Allow\"\naction = \"*\"\nresource = \"\""),
            PolicyError::EmptyResource { statement: 3 }
        );
        let msg = bad("effect = \"Allow\"\naction = \"kinesisvideo\"\nresource = \"*\"").to_string();
        assert!(msg.contains("statement #3") && msg.contains("'kinesisvideo'"), "{msg}");
    }

    /// Reference implementation: translate the glob to an anchored regex.
    fn regex_glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
        let mut re = String::from(if ignore_case { "(?is)^" } else { "(?s)^" });
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap().is_match(text)
    }

    proptest! {
        #[test]
        fn glob_agrees_with_regex(pattern in "[ab*?:/]{0,8}", text in "[ab:/]{0,10}") {
            prop_assert_eq!(Pattern::case_sensitive(&pattern).matches(&text), regex_glob(&pattern, &text, false));
        }

        #[test]
        fn action_glob_agrees_with_case_insensitive_regex(pattern in "[aAbB*?]{0,6}", text in "[aAbB]{0,8}") {
            prop_assert_eq!(Pattern::case_insensitive(&pattern).matches(&text), regex_glob(&pattern, &text, true));
        }

        #[test]
        fn a_matching_deny_always_wins(
            allows in proptest::collection::vec(("[a-c*]{1,3}", "[x-z*]{1,3}"), 0..4),
            action in "[a-c]{1,3}",
            resource in "[x-z]{1,3}",
        ) {
            let mut statements: Vec<Statement> = allows
                .iter()
                .map(|(a, r)| Statement::new(Effect::Allow, &[&format!("svc:{a}")], &[r]))
                .collect();
            let before = Policy::new(statements.clone()).evaluate(&format!("svc:{action}"), &resource);
            prop_assert_ne!(before, Decision::ExplicitDeny);
            statements.insert(0, Statement::new(Effect::Deny, &[&format!("svc:{action}")], &["*"]));
            prop_assert_eq!(Policy::new(statements).evaluate(&format!("svc:{action}"), &resource), Decision::ExplicitDeny);
        }
    }
}
