//! One page of a table's rows that match a condition, and how many match in all: the listing
//! shape every list route shares (`page`/`per_page` become `offset`/`limit`).

use sqlx::{any::AnyRow, AnyPool, Row};

use super::StoreError;

/// Which rows of which table, in which order. `condition` refers to `values` as `$1`, `$2`, …,
/// each bound as text.
pub(super) struct PageQuery<'a> {
    pub table: &'static str,
    pub columns: &'static str,
    pub condition: &'a str,
    pub values: &'a [String],
    pub order_by: &'static str,
}

impl PageQuery<'_> {
    /// The rows from `offset` on (at most `limit`), each read by `decode`, and the total.
    pub async fn fetch<T>(
        &self,
        pool: &AnyPool,
        offset: i64,
        limit: i64,
        decode: impl Fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, i64), StoreError> {
        let next = self.values.len() + 1;
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT ${next} OFFSET ${}",
            self.columns,
            self.table,
            self.condition,
            self.order_by,
            next + 1
        );
        let mut query = sqlx::query(&sql);
        for value in self.values {
            query = query.bind(value.clone());
        }
        let rows = query.bind(limit).bind(offset).fetch_all(pool).await?;
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE {}",
            self.table, self.condition
        );
        let mut count = sqlx::query(&count_sql);
        for value in self.values {
            count = count.bind(value.clone());
        }
        let total: i64 = count.fetch_one(pool).await?.try_get("n")?;
        let items = rows.iter().map(decode).collect::<Result<_, _>>()?;
        Ok((items, total))
    }
}
