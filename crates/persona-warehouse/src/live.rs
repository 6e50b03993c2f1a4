//! A table read from the profile store when a query scans it, so it is as current as the
//! store at that moment and costs nothing while no query names it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

/// Reads a table's rows; runs on a blocking thread.
pub(crate) type Build = dyn Fn() -> Result<Vec<RecordBatch>, String> + Send + Sync;

pub(crate) struct LiveTable {
    name: &'static str,
    schema: SchemaRef,
    build: Arc<Build>,
}

impl LiveTable {
    pub fn new(name: &'static str, schema: SchemaRef, build: Arc<Build>) -> Self {
        LiveTable {
            name,
            schema,
            build,
        }
    }
}

impl fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTable")
            .field("name", &self.name)
            .finish()
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let build = self.build.clone();
        let name = self.name;
        let batches = tokio::task::spawn_blocking(move || build())
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::Execution(format!("cannot read {name}: {e}")))?;
        MemTable::try_new(self.schema.clone(), vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}
