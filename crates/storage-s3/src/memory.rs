//! An in-memory store, for tests of the layers above.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::key::{validate_key, validate_prefix};
use crate::store::{clamp_range, ObjectMeta, ObjectStore};

/// Objects in a map. Clones share the same objects, so a test can keep one
/// handle to inspect what the code under test wrote through another.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no object.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Vec<u8>>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every mutation is a single insert or remove), so poison is harmless.
        self.objects
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn object(&self, key: &str) -> Result<Arc<Vec<u8>>, StoreError> {
        validate_key(key)?;
        self.lock()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::not_found(key))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().insert(key.to_owned(), Arc::new(bytes.to_vec()));
        Ok(())
    }

    async fn get(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        let object = self.object(key)?;
        let size = object.len() as u64;
        if size > max_bytes {
            return Err(StoreError::too_large(key, max_bytes, Some(size)));
        }
        Ok(object.as_ref().clone())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let object = self.object(key)?;
        let r = clamp_range(&range, object.len() as u64)?;
        Ok(object[r.start as usize..r.end as usize].to_vec())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let size = self.object(key)?.len() as u64;
        Ok(ObjectMeta { size })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        Ok(self
            .lock()
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }
}
