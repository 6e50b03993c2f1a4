//! The live tables: `profiles`, `segments` and `segment_members`, read from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use persona_core::profile::{ComputedView, Profile};
use persona_store::{ProfileId, ProfileStore, StoreError};

use crate::QueryError;
use crate::live::{Build, LiveTable};

/// Profiles decoded at a time while a table is read.
const PAGE: usize = 4096;

pub(crate) fn register(
    context: &SessionContext,
    store: Arc<dyn ProfileStore>,
) -> Result<(), QueryError> {
    let tables: [(&'static str, SchemaRef, Arc<Build>); 3] = [
        ("profiles", profiles_schema(), {
            let store = store.clone();
            Arc::new(move || {
                let mut batches = Vec::new();
                profile_batches::<StoreError>(&*store, Utc::now(), |batch| {
                    batches.push(batch);
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
                Ok(batches)
            })
        }),
        ("segments", segments_schema(), {
            let store = store.clone();
            Arc::new(move || segments(&*store).map_err(|e| e.to_string()))
        }),
        ("segment_members", members_schema(), {
            let store = store.clone();
            Arc::new(move || members(&*store).map_err(|e| e.to_string()))
        }),
    ];
    for (name, schema, build) in tables {
        context.register_table(name, Arc::new(LiveTable::new(name, schema, build)))?;
    }
    Ok(())
}

/// A table's page as a batch; a mismatch with its schema is a bug, reported as the store's.
fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, StoreError> {
    RecordBatch::try_new(schema, columns).map_err(|e| StoreError::Backend(e.to_string()))
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// A computed figure: its column's name and how to read it from a profile's view.
enum Figure {
    Count(&'static str, fn(&ComputedView<'_>) -> u64),
    Days(&'static str, fn(&ComputedView<'_>) -> Option<i64>),
    Amount(&'static str, fn(&ComputedView<'_>) -> f64),
    Ratio(&'static str, fn(&ComputedView<'_>) -> Option<f64>),
    Time(&'static str, fn(&ComputedView<'_>) -> Option<DateTime<Utc>>),
}

/// The profile API's `computed` figures, in its order. Its counts by event name and page
/// category are left out: the `events` table has them.
const FIGURES: &[Figure] = &[
    Figure::Count("event_count", |c| c.event_count),
    Figure::Time("first_seen", |c| c.first_seen),
    Figure::Time("last_seen", |c| c.last_seen),
    Figure::Days("days_since_last_seen", |c| c.days_since_last_seen),
    Figure::Days("recency_days", |c| c.recency_days),
    Figure::Count("frequency", |c| c.frequency),
    Figure::Amount("monetary", |c| c.monetary),
    Figure::Ratio("avg_order_value", |c| c.avg_order_value),
    Figure::Time("first_purchase", |c| c.first_purchase),
    Figure::Time("last_purchase", |c| c.last_purchase),
    Figure::Count("page_views", |c| c.page_views),
    Figure::Count("screen_views", |c| c.screen_views),
    Figure::Count("sessions", |c| c.sessions),
    Figure::Amount("time_on_site_seconds", |c| c.time_on_site_seconds),
    Figure::Ratio("avg_session_seconds", |c| c.avg_session_seconds),
    Figure::Count("email_opens", |c| c.email_opens),
    Figure::Count("email_clicks", |c| c.email_clicks),
    Figure::Ratio("click_through_rate", |c| c.click_through_rate),
    Figure::Count("app_sessions", |c| c.app_sessions),
    Figure::Count("events_7d", |c| c.events_7d),
    Figure::Count("events_30d", |c| c.events_30d),
    Figure::Count("events_90d", |c| c.events_90d),
    Figure::Count("purchases_30d", |c| c.purchases_30d),
    Figure::Count("purchases_90d", |c| c.purchases_90d),
    Figure::Amount("revenue_30d", |c| c.revenue_30d),
    Figure::Amount("revenue_90d", |c| c.revenue_90d),
];

impl Figure {
    fn field(&self) -> Field {
        match self {
            Figure::Count(name, _) => Field::new(*name, DataType::UInt64, false),
            Figure::Days(name, _) => Field::new(*name, DataType::Int64, true),
            Figure::Amount(name, _) => Field::new(*name, DataType::Float64, false),
            Figure::Ratio(name, _) => Field::new(*name, DataType::Float64, true),
            Figure::Time(name, _) => Field::new(*name, utc_micros(), true),
        }
    }
}

/// A builder for one figure's column.
enum FigureColumn {
    Count(UInt64Builder),
    Days(Int64Builder),
    Real(Float64Builder),
    Time(TimestampMicrosecondBuilder),
}

impl FigureColumn {
    fn for_figure(figure: &Figure) -> Self {
        match figure {
            Figure::Count(..) => FigureColumn::Count(UInt64Builder::new()),
            Figure::Days(..) => FigureColumn::Days(Int64Builder::new()),
            Figure::Amount(..) | Figure::Ratio(..) => FigureColumn::Real(Float64Builder::new()),
            Figure::Time(..) => {
                FigureColumn::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    fn push(&mut self, figure: &Figure, c: &ComputedView<'_>) {
        match (self, figure) {
            (FigureColumn::Count(b), Figure::Count(_, read)) => b.append_value(read(c)),
            (FigureColumn::Days(b), Figure::Days(_, read)) => b.append_option(read(c)),
            (FigureColumn::Real(b), Figure::Amount(_, read)) => b.append_value(read(c)),
            (FigureColumn::Real(b), Figure::Ratio(_, read)) => b.append_option(read(c)),
            (FigureColumn::Time(b), Figure::Time(_, read)) => {
                b.append_option(read(c).map(|t| t.timestamp_micros()))
            }
            _ => unreachable!("each column is built for its figure"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            FigureColumn::Count(b) => Arc::new(b.finish()),
            FigureColumn::Days(b) => Arc::new(b.finish()),
            FigureColumn::Real(b) => Arc::new(b.finish()),
            FigureColumn::Time(b) => Arc::new(b.finish()),
        }
    }
}

pub(crate) fn profiles_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("profile_id", DataType::UInt64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_ids", text_list(), false),
        Field::new("aliases", text_list(), false),
        Field::new("traits", DataType::Utf8, false),
        Field::new(
            "segments",
            DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
            false,
        ),
    ];
    fields.extend(FIGURES.iter().map(Figure::field));
    fields.push(Field::new("as_of", utc_micros(), false));
    Arc::new(Schema::new(fields))
}

/// Every profile as of `as_of`, handed to `each` a batch a page.
pub(crate) fn profile_batches<E: From<StoreError>>(
    store: &dyn ProfileStore,
    as_of: DateTime<Utc>,
    mut each: impl FnMut(RecordBatch) -> Result<(), E>,
) -> Result<(), E> {
    persona_store::for_each_page(store, PAGE, |page: &[(ProfileId, Profile)]| {
        let mut id = UInt64Builder::with_capacity(page.len());
        let mut user_id = StringBuilder::new();
        let mut anonymous_ids = ListBuilder::new(StringBuilder::new());
        let mut aliases = ListBuilder::new(StringBuilder::new());
        let mut traits = StringBuilder::new();
        let mut segments = ListBuilder::new(UInt64Builder::new());
        let mut figures: Vec<_> = FIGURES.iter().map(FigureColumn::for_figure).collect();
        for (pid, profile) in page {
            let view = profile.view(as_of);
            id.append_value(*pid);
            user_id.append_option(profile.user_id.as_deref());
            anonymous_ids.append_value(profile.anonymous_ids.iter().map(Some));
            aliases.append_value(profile.aliases.iter().map(Some));
            traits.append_value(serde_json::to_string(&view.traits).unwrap_or_default());
            segments.append_value(profile.segments.iter().map(|s| Some(*s)));
            for (column, figure) in figures.iter_mut().zip(FIGURES) {
                column.push(figure, &view.computed);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(user_id.finish()),
            Arc::new(anonymous_ids.finish()),
            Arc::new(aliases.finish()),
            Arc::new(traits.finish()),
            Arc::new(segments.finish()),
        ];
        columns.extend(figures.iter_mut().map(FigureColumn::finish));
        let mut at = TimestampMicrosecondBuilder::with_capacity(page.len()).with_timezone("UTC");
        at.append_value_n(as_of.timestamp_micros(), page.len());
        columns.push(Arc::new(at.finish()));
        each(batch(profiles_schema(), columns)?)
    })
}

fn segments_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment_id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("member_count", DataType::UInt64, false),
        Field::new("created_at", utc_micros(), true),
        Field::new("updated_at", utc_micros(), true),
    ]))
}

fn segments(store: &dyn ProfileStore) -> Result<Vec<RecordBatch>, StoreError> {
    let defs = store.segments()?;
    let mut id = UInt64Builder::new();
    let mut name = StringBuilder::new();
    let mut rule = StringBuilder::new();
    let mut version = UInt64Builder::new();
    let mut count = UInt64Builder::new();
    let time = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut created, mut updated) = (time(), time());
    let micros = |ms: i64| ms.checked_mul(1000);
    for def in &defs {
        id.append_value(def.id);
        name.append_value(&def.name);
        rule.append_value(&def.rule);
        version.append_value(def.version);
        count.append_value(store.member_count(def.id)?);
        created.append_option(micros(def.created_at));
        updated.append_option(micros(def.updated_at));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(name.finish()),
        Arc::new(rule.finish()),
        Arc::new(version.finish()),
        Arc::new(count.finish()),
        Arc::new(created.finish()),
        Arc::new(updated.finish()),
    ];
    Ok(vec![batch(segments_schema(), columns)?])
}

fn members_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("segment_id", DataType::UInt64, false),
        Field::new("segment_name", DataType::Utf8, false),
        Field::new("profile_id", DataType::UInt64, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("anonymous_id", DataType::Utf8, true),
    ]))
}

/// Who is in each rule segment now, from the profiles' own lists (as the members API).
fn members(store: &dyn ProfileStore) -> Result<Vec<RecordBatch>, StoreError> {
    let names: BTreeMap<u64, String> = store
        .segments()?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let mut batches = Vec::new();
    persona_store::for_each_page(store, PAGE, |page: &[(ProfileId, Profile)]| {
        let mut segment = UInt64Builder::new();
        let mut segment_name = StringBuilder::new();
        let mut profile_id = UInt64Builder::new();
        let mut user_id = StringBuilder::new();
        let mut anonymous_id = StringBuilder::new();
        for (pid, profile) in page {
            for s in &profile.segments {
                // A segment being deleted may linger in a profile until its exits land.
                let Some(name) = names.get(s) else { continue };
                segment.append_value(*s);
                segment_name.append_value(name);
                profile_id.append_value(*pid);
                user_id.append_option(profile.user_id.as_deref());
                anonymous_id.append_option(profile.anonymous_ids.first());
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(segment.finish()),
            Arc::new(segment_name.finish()),
            Arc::new(profile_id.finish()),
            Arc::new(user_id.finish()),
            Arc::new(anonymous_id.finish()),
        ];
        batches.push(batch(members_schema(), columns)?);
        Ok::<_, StoreError>(())
    })?;
    Ok(batches)
}
