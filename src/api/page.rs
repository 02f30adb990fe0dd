//! Pagination of the list routes: `page` and `per_page` from a query string, as an offset and a
//! limit for the store.

use super::error::{ApiError, ErrorEntry};

const DEFAULT_PER_PAGE: i64 = 10;
const MAX_PER_PAGE: i64 = 100;

/// `page` (from 1) and `per_page` (1 to 100) from the query string; other parameters are ignored.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Page {
    pub(super) offset: i64,
    pub(super) per_page: i64,
}

impl Page {
    pub(super) fn parse(query: &str) -> Result<Self, ApiError> {
        let mut page = 1;
        let mut per_page = DEFAULT_PER_PAGE;
        let mut errors = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (target, max) = match name.as_ref() {
                "page" => (&mut page, i64::MAX),
                "per_page" => (&mut per_page, MAX_PER_PAGE),
                _ => continue,
            };
            match value.trim().parse::<i64>() {
                Ok(n) if (1..=max).contains(&n) => *target = n,
                _ if max == i64::MAX => errors.push(ErrorEntry::field(
                    name.as_ref(),
                    "must be a whole number from 1",
                )),
                _ => errors.push(ErrorEntry::field(
                    name.as_ref(),
                    format!("must be a whole number from 1 to {max}"),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Unprocessable(errors));
        }
        let offset = (page - 1)
            .checked_mul(per_page)
            .ok_or_else(|| ApiError::invalid("page", "is too large"))?;
        Ok(Page { offset, per_page })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_offset() {
        assert_eq!(
            Page::parse("").unwrap(),
            Page {
                offset: 0,
                per_page: DEFAULT_PER_PAGE
            }
        );
        assert_eq!(
            Page::parse("page=3&per_page=20&other=x").unwrap(),
            Page {
                offset: 40,
                per_page: 20
            }
        );
    }

    proptest::proptest! {
        /// Any query string: a page, or a 422 naming `page` or `per_page`; never a panic.
        #[test]
        fn any_query_string_is_a_page_or_names_the_parameter(query in "[ -~]{0,40}") {
            match Page::parse(&query) {
                Ok(page) => {
                    proptest::prop_assert!(page.offset >= 0);
                    proptest::prop_assert!((1..=MAX_PER_PAGE).contains(&page.per_page));
                }
                Err(ApiError::Unprocessable(errors)) => {
                    for error in errors {
                        let field = error.field.unwrap_or_default();
                        proptest::prop_assert!(field == "page" || field == "per_page", "{}", field);
                    }
                }
                Err(other) => proptest::prop_assert!(false, "{other}"),
            }
        }
    }

    #[test]
    fn bad_page_parameters_are_named() {
        for query in ["page=0", "page=-1", "page=abc", "page="] {
            let Err(ApiError::Unprocessable(errors)) = Page::parse(query) else {
                panic!("{query} was accepted");
            };
            assert_eq!(errors[0].field.as_deref(), Some("page"), "{query}");
        }
        for query in ["per_page=0", "per_page=101", "per_page=1.5"] {
            let Err(ApiError::Unprocessable(errors)) = Page::parse(query) else {
                panic!("{query} was accepted");
            };
            assert_eq!(errors[0].field.as_deref(), Some("per_page"), "{query}");
        }
        assert!(Page::parse(&format!("page={}&per_page=100", i64::MAX)).is_err());
    }
}
