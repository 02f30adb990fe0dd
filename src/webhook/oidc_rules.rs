//! The seed's rules for a webhook's OAuth settings, checked on the merged draft: a method names
//! what it requires, nothing OAuth goes without a method, and each value follows its own rule.

use super::{
    draft::{check_url, Draft, FieldError, UrlRules},
    OidcAuthMethod,
};
use crate::secret::Secret;

impl Draft {
    pub(super) fn check_oidc(
        &self,
        rules: &UrlRules,
        errors: &mut Vec<FieldError>,
    ) -> Option<OidcAuthMethod> {
        let method = match self.oidc_auth_method.as_deref() {
            None => None,
            Some(text) => match OidcAuthMethod::parse(text) {
                Some(method) => Some(method),
                None => {
                    errors.push(FieldError::new(
                        "oidc_auth_method",
                        "must be \"private_key_jwt\" or \"client_secret\"",
                    ));
                    return None;
                }
            },
        };
        let given: [(&'static str, bool); 6] = [
            ("oidc_client_id", self.oidc_client_id.is_some()),
            ("oidc_client_secret", self.oidc_client_secret.is_some()),
            ("oidc_token_endpoint", self.oidc_token_endpoint.is_some()),
            ("oidc_resource_uri", self.oidc_resource_uri.is_some()),
            ("oidc_scope", self.oidc_scope.is_some()),
            (
                "oidc_access_token_ttl_seconds",
                self.oidc_access_token_ttl_seconds.is_some(),
            ),
        ];
        let Some(method) = method else {
            for (field, present) in given {
                if present {
                    errors.push(FieldError::new(
                        field,
                        "requires oidc_auth_method (\"private_key_jwt\" or \"client_secret\")",
                    ));
                }
            }
            return None;
        };
        let mut required = vec![
            "oidc_client_id",
            "oidc_token_endpoint",
            "oidc_access_token_ttl_seconds",
        ];
        if method == OidcAuthMethod::ClientSecret {
            required.insert(1, "oidc_client_secret");
        }
        for (field, present) in given {
            if required.contains(&field) && !present {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "is required when oidc_auth_method is \"{}\"",
                        method.as_str()
                    ),
                ));
            }
        }
        if method == OidcAuthMethod::PrivateKeyJwt && self.oidc_client_secret.is_some() {
            errors.push(FieldError::new(
                "oidc_client_secret",
                "is only used when oidc_auth_method is \"client_secret\"",
            ));
        }
        self.check_oidc_values(rules, errors);
        Some(method)
    }

    /// The rules each OAuth value follows on its own.
    fn check_oidc_values(&self, rules: &UrlRules, errors: &mut Vec<FieldError>) {
        let non_empty = [
            ("oidc_client_id", self.oidc_client_id.as_deref()),
            (
                "oidc_client_secret",
                self.oidc_client_secret.as_ref().map(Secret::expose),
            ),
            ("oidc_scope", self.oidc_scope.as_deref()),
        ];
        for (field, value) in non_empty {
            if matches!(value, Some(v) if v.is_empty() || v.len() > 1024) {
                errors.push(FieldError::new(field, "must be 1 to 1024 characters"));
            }
        }
        if let Some(Err(e)) = self
            .oidc_token_endpoint
            .as_deref()
            .map(|u| check_url(u, rules))
        {
            errors.push(FieldError::new("oidc_token_endpoint", e.0));
        }
        if let Some(resource) = &self.oidc_resource_uri {
            if resource.len() > 2048 || url::Url::parse(resource).is_err() {
                errors.push(FieldError::new(
                    "oidc_resource_uri",
                    "must be an absolute URI",
                ));
            }
        }
        if matches!(self.oidc_access_token_ttl_seconds, Some(ttl) if !(1..=86_400).contains(&ttl)) {
            errors.push(FieldError::new(
                "oidc_access_token_ttl_seconds",
                "must be an integer from 1 to 86400",
            ));
        }
    }
}
