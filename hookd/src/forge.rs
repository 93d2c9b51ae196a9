//! Which forge sent a delivery, how it signs it, and what the delivery asks for.

use serde_json::Value;

use crate::signature::{AuthError, Secret, verify_hmac, verify_token};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    Forgejo,
    Gogs,
    GitLab,
}

impl Forge {
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::Forgejo => "forgejo",
            Forge::Gogs => "gogs",
            Forge::GitLab => "gitlab",
        }
    }
}

/// The forge, event and delivery id a request's headers announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub forge: Forge,
    pub event: String,
    pub id: Option<String>,
}

/// Reads the headers. Gitea also sends Gogs' and GitHub's headers, and Forgejo Gitea's, for
/// compatibility: the most specific wins.
pub fn identify(header: &dyn Fn(&str) -> Option<String>) -> Option<Delivery> {
    let candidates = [
        (Forge::Forgejo, "x-forgejo-event", "x-forgejo-delivery"),
        (Forge::Gitea, "x-gitea-event", "x-gitea-delivery"),
        (Forge::Gogs, "x-gogs-event", "x-gogs-delivery"),
        (Forge::GitHub, "x-github-event", "x-github-delivery"),
        (Forge::GitLab, "x-gitlab-event", "x-gitlab-event-uuid"),
    ];
    candidates.iter().find_map(|(forge, event, delivery)| {
        Some(Delivery {
            forge: *forge,
            event: header(event)?,
            id: header(delivery).filter(|d| !d.is_empty()),
        })
    })
}

/// Checks the delivery's signature against the secret, or GitLab's token against the GitLab
/// token. GitLab sends its token itself, in clear, with every delivery: it is a separate
/// setting, so that the HMAC secret never travels and a captured GitLab token is accepted only
/// where GitLab is configured.
pub fn authenticate(
    forge: Forge,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &Secret,
    gitlab_token: Option<&Secret>,
) -> Result<(), AuthError> {
    match forge {
        Forge::GitHub => verify_hmac(secret, body, header("x-hub-signature-256").as_deref()),
        Forge::Gitea => verify_hmac(secret, body, header("x-gitea-signature").as_deref()),
        Forge::Forgejo => verify_hmac(
            secret,
            body,
            header("x-forgejo-signature")
                .or_else(|| header("x-gitea-signature"))
                .as_deref(),
        ),
        Forge::Gogs => verify_hmac(secret, body, header("x-gogs-signature").as_deref()),
        Forge::GitLab => match gitlab_token {
            Some(token) => verify_token(token, header("x-gitlab-token").as_deref()),
            None => Err(AuthError::NotConfigured),
        },
    }
}

/// What an authentic delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The forge checks that the hook works.
    Ping,
    /// A push to a branch (the deployed one, when `deployed` was given).
    Deploy { branch: String, after: String },
    /// Anything else, with the reason.
    Ignore(String),
}

/// Decides from the event and the payload; `deployed` is the branch that is deployed, when
/// hookd is told it (`HOOKD_BRANCH`); otherwise the supervisor checks the branch.
pub fn classify(delivery: &Delivery, payload: &Value, deployed: Option<&str>) -> Decision {
    let event = delivery.event.to_ascii_lowercase();
    match event.as_str() {
        "ping" => return Decision::Ping,
        "push" | "push hook" => {}
        "tag push hook" => return Decision::Ignore("a tag push".into()),
        other => return Decision::Ignore(format!("the {other:?} event is not a push")),
    }
    let Some(git_ref) = payload.get("ref").and_then(Value::as_str) else {
        return Decision::Ignore("the push names no ref".into());
    };
    if git_ref.starts_with("refs/tags/") {
        return Decision::Ignore(format!("{git_ref} is a tag"));
    }
    let after = payload
        .get("after")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let zeros = (after.len() == 40 || after.len() == 64) && after.bytes().all(|b| b == b'0');
    if zeros || payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Decision::Ignore(format!("{git_ref} was deleted"));
    }
    let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
        return Decision::Ignore(format!("{git_ref} is not a branch"));
    };
    // Without `HOOKD_BRANCH` the supervisor checks the branch with the deploy request.
    if let Some(deployed) = deployed.filter(|d| *d != branch) {
        return Decision::Ignore(format!(
            "a push to {branch}; {deployed} is the deployed branch"
        ));
    }
    Decision::Deploy {
        branch: branch.to_owned(),
        after: after.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn the_most_specific_forge_wins() {
        let gitea = headers(&[
            ("X-GitHub-Event", "push"),
            ("X-Gogs-Event", "push"),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Delivery", "f6266f16"),
        ]);
        let d = identify(&gitea).unwrap();
        assert_eq!(
            (d.forge, d.event.as_str(), d.id.as_deref()),
            (Forge::Gitea, "push", Some("f6266f16"))
        );
        let gitlab = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert_eq!(identify(&gitlab).unwrap().forge, Forge::GitLab);
        assert_eq!(
            identify(&headers(&[("Content-Type", "application/json")])),
            None
        );
    }

    #[test]
    fn pushes_tags_deletions_and_other_branches() {
        let push = Delivery {
            forge: Forge::GitHub,
            event: "push".into(),
            id: None,
        };
        let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        assert_eq!(
            classify(
                &push,
                &json!({"ref": "refs/heads/main", "after": sha}),
                Some("main")
            ),
            Decision::Deploy {
                branch: "main".into(),
                after: sha.into()
            }
        );
        let ignored = |payload: Value| match classify(&push, &payload, Some("main")) {
            Decision::Ignore(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ignored(json!({"ref": "refs/heads/dev", "after": sha})),
            "a push to dev; main is the deployed branch"
        );
        assert_eq!(
            ignored(json!({"ref": "refs/tags/v1", "after": sha})),
            "refs/tags/v1 is a tag"
        );
        assert_eq!(
            ignored(json!({"ref": "refs/heads/main", "after": "0".repeat(40)})),
            "refs/heads/main was deleted"
        );
        assert_eq!(
            ignored(json!({"ref": "refs/heads/main", "after": "0".repeat(64)})),
            "refs/heads/main was deleted"
        );
        assert_eq!(
            ignored(json!({"ref": "refs/heads/main", "after": sha, "deleted": true})),
            "refs/heads/main was deleted"
        );
        assert_eq!(ignored(json!({"after": sha})), "the push names no ref");
        // Without a branch of its own, any branch's push goes on, for the supervisor to check.
        assert_eq!(
            classify(&push, &json!({"ref": "refs/heads/dev", "after": sha}), None),
            Decision::Deploy {
                branch: "dev".into(),
                after: sha.into()
            }
        );
        let issue = Delivery {
            event: "issues".into(),
            ..push.clone()
        };
        assert_eq!(
            classify(&issue, &json!({}), Some("main")),
            Decision::Ignore("the \"issues\" event is not a push".into())
        );
        let ping = Delivery {
            event: "ping".into(),
            ..push
        };
        assert_eq!(
            classify(&ping, &json!({"zen": "x"}), Some("main")),
            Decision::Ping
        );
    }
}
