//! Status: what sync knows, from local state only (no requests).

use crate::error::SyncError;
use crate::service::SyncService;
use bae_oplog::OpRecorder;
use serde::Serialize;

/// One other device as last seen in its head.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DeviceStatus {
    /// The device.
    pub device: String,
    /// Its batches applied here.
    pub applied_seq: u64,
    /// Its newest batch, per its head.
    pub head_seq: Option<u64>,
    /// When it last pushed (Unix ms), per its head.
    pub last_synced_ms: Option<i64>,
}

/// A batch that did not apply.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ProblemStatus {
    /// The device.
    pub device: String,
    /// The batch.
    pub seq: u64,
    /// `held` or `rejected`.
    pub kind: String,
    /// Why.
    pub reason: String,
}

/// A device whose batches carry a newer sync schema than this device runs:
/// what it writes in tables and columns this device does not know is kept,
/// unapplied, until this device's host updates.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NewerSchemaStatus {
    /// The device.
    pub device: String,
    /// The newest schema version its batches carried.
    pub schema_version: u32,
}

/// The sync status of a library.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// This device.
    pub device: String,
    /// The bucket, if set up.
    pub bucket: Option<String>,
    /// Local batches not yet pushed.
    pub pending_batches: u64,
    /// Other devices.
    pub devices: Vec<DeviceStatus>,
    /// Batches held back or rejected in the last pull.
    pub problems: Vec<ProblemStatus>,
    /// The last sync error, if the last sync failed.
    pub last_error: Option<String>,
    /// Images of batches a push has taken up whose bytes are not uploaded
    /// yet (their device had no bytes for them when it pushed).
    pub images_queued: u64,
    /// Images pulled rows name that the bucket did not have yet (retried
    /// by later pulls).
    pub images_wanted: u64,
    /// The sync schema version this device runs
    /// (`bae_oplog::SyncSchema::version`).
    pub schema_version: u32,
    /// Devices writing a newer schema: "device D writes schema N, this
    /// device has M: update to see everything".
    pub newer_schema: Vec<NewerSchemaStatus>,
    /// Ops (or the parts of ops) of newer writers' batches kept here
    /// unapplied until this device runs a schema that knows them.
    pub kept_ops: u64,
}

/// Reads the status of a library (creating the engine's tables if the
/// library has never synced).
pub fn read_status(rec: &mut OpRecorder) -> Result<Status, SyncError> {
    crate::service::migrate(rec)?;
    status_of(rec)
}

/// The status of a library whose engine tables exist.
fn status_of(rec: &mut OpRecorder) -> Result<Status, SyncError> {
    let device = rec.device().to_string();
    let schema = rec.schema();
    let conn = rec.sync_parts().0;
    let (newer, kept_ops) = bae_merge::newer_writers(conn, schema)?;
    let newer_schema = newer
        .into_iter()
        .map(|w| NewerSchemaStatus {
            device: w.device.to_string(),
            schema_version: w.schema_version,
        })
        .collect();
    let (bucket, last_error): (Option<String>, Option<String>) = conn.query_row(
        "SELECT bucket_url, last_error FROM bae_sync_library WHERE id = 1",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let pending_batches = bae_oplog::unpushed_batches(conn)?.len() as u64;
    let mut stmt = conn.prepare("SELECT device_id, applied_seq, head_seq, last_synced_ms FROM bae_sync_cursors ORDER BY device_id")?;
    let devices = stmt
        .query_map([], |r| {
            Ok(DeviceStatus {
                device: r.get(0)?,
                applied_seq: r.get::<_, i64>(1)? as u64,
                head_seq: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
                last_synced_ms: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT device_id, seq, kind, reason FROM bae_sync_problems ORDER BY device_id, seq",
    )?;
    let problems = stmt
        .query_map([], |r| {
            Ok(ProblemStatus {
                device: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                kind: r.get(2)?,
                reason: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let count = |table: &str| -> Result<u64, SyncError> {
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n as u64)
    };
    Ok(Status {
        device,
        bucket,
        pending_batches,
        devices,
        problems,
        last_error,
        images_queued: count("bae_sync_image_queue")?,
        images_wanted: count("bae_sync_wanted_images")?,
        schema_version: schema.version(),
        newer_schema,
        kept_ops,
    })
}

impl SyncService {
    /// The library's sync status (local state only: no requests).
    pub async fn status(&self) -> Result<Status, SyncError> {
        // The service migrated the tables when it was built.
        self.with_db(status_of).await
    }

    /// Pushes then pulls, recording the outcome for status. A push that
    /// cannot re-take this device's own batches yet
    /// ([`SyncError::OwnBatchHeld`]) is tried again after a pull.
    pub async fn sync(&self) -> Result<(crate::PushReport, crate::PullReport), SyncError> {
        let result = async {
            let push = match self.push().await {
                // Batches this device pushed before its database went back
                // in time wait for rows another device wrote: pull those
                // first, then the push re-takes them and goes on.
                Err(SyncError::OwnBatchHeld { .. }) => {
                    self.pull().await?;
                    self.push().await?
                }
                other => other?,
            };
            Ok::<_, SyncError>((push, self.pull().await?))
        }
        .await;
        let error = result.as_ref().err().map(|e| e.to_string());
        self.with_db(move |rec| {
            rec.sync_parts().0.execute(
                "UPDATE bae_sync_library SET last_error = ?1 WHERE id = 1",
                [error],
            )?;
            Ok(())
        })
        .await?;
        result
    }
}
