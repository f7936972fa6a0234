//! The per-block check of `idres verify` (sync/verify.py, `_check_chain`), for the
//! blocks and records it can prove agree: a block's entries are the ones it signed,
//! and every record its operations decide is the one stored. What it cannot prove
//! (a problem, or input it does not take) it hands back, and the Python path, which
//! stays the reference, checks it and says what is wrong. No I/O: pages of rows come
//! in as the bytes of PostgreSQL's binary COPY (sync/native/pages.py fetches them).

use crate::block::{self, Tip};
use crate::pgcopy::{self, Field, Malformed};
use crate::record::{self, Row};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::collections::{HashMap, HashSet, VecDeque};

/// A stored entry: `seq, height, kind, handle, version, hash, payload`.
struct Entry {
    seq: i64,
    height: i64,
    kind: String,
    handle: String,
    version: i64,
    hash: Vec<u8>,
    payload: Vec<u8>,
}

/// A stored record: its version, routing key and value rows in index order.
struct Stored {
    version: i64,
    routing_key: String,
    rows: Vec<Row>,
}

#[derive(Default)]
struct State {
    last: HashMap<String, Vec<(String, i64)>>, // handle -> (chain, last op version)
    records: HashMap<String, Stored>,
}

fn bad(e: Malformed) -> PyErr {
    PyValueError::new_err(format!("COPY output: {}", e.0))
}

/// Entries of one chain in sequence order (a page of them), with the state of the
/// records their operations name, as `sync.verify._fetch_state` reads it.
#[pyclass(module = "idres_native")]
pub struct Page {
    entries: Vec<Entry>,
    state: State,
    #[pyo3(get)]
    count: usize,
    #[pyo3(get)]
    last_seq: i64,
    #[pyo3(get)]
    max_height: i64,
}

#[pymethods]
impl Page {
    #[new]
    fn new(entries: &[u8]) -> PyResult<Self> {
        let mut out = Vec::new();
        for f in pgcopy::rows(entries, 7).map_err(bad)? {
            out.push(entry(&f).map_err(bad)?);
        }
        Ok(Page {
            count: out.len(),
            last_seq: out.last().map_or(0, |e| e.seq),
            max_height: out.iter().map(|e| e.height).max().unwrap_or(0),
            entries: out,
            state: State::default(),
        })
    }

    /// The last operation versions (`handle, chain, max(version)`) and the records
    /// (`handle, version, routing_key` and a value row, or NULLs) of the page's handles.
    fn add_state(&mut self, last: &[u8], records: &[u8]) -> PyResult<()> {
        for f in pgcopy::rows(last, 3).map_err(bad)? {
            let (handle, chain) = (
                pgcopy::text(f[0]).map_err(bad)?,
                pgcopy::text(f[1]).map_err(bad)?,
            );
            let version = pgcopy::int(f[2]).map_err(bad)?;
            self.state
                .last
                .entry(handle)
                .or_default()
                .push((chain, version));
        }
        for f in pgcopy::rows(records, 13).map_err(bad)? {
            let handle = pgcopy::text(f[0]).map_err(bad)?;
            let stored = match self.state.records.entry(handle) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(Stored {
                    version: pgcopy::int(f[1]).map_err(bad)?,
                    routing_key: pgcopy::text(f[2]).map_err(bad)?,
                    rows: Vec::new(),
                }),
            };
            if f[3].is_some() {
                stored.rows.push(value_row(&f[3..]).map_err(bad)?);
            }
        }
        for stored in self.state.records.values_mut() {
            stored.rows.sort_unstable_by_key(|r| r.idx); // the index is unique per record
        }
        Ok(())
    }
}

fn entry(f: &[Field<'_>]) -> Result<Entry, Malformed> {
    Ok(Entry {
        seq: pgcopy::int(f[0])?,
        height: pgcopy::int(f[1])?,
        kind: pgcopy::text(f[2])?,
        handle: pgcopy::text(f[3])?,
        version: pgcopy::int(f[4])?,
        hash: pgcopy::bytes(f[5])?,
        payload: pgcopy::bytes(f[6])?,
    })
}

fn value_row(f: &[Field<'_>]) -> Result<Row, Malformed> {
    Ok(Row {
        idx: pgcopy::int(f[0])?,
        type_: pgcopy::text(f[1])?,
        format: pgcopy::text(f[2])?,
        data: pgcopy::bytes(f[3])?,
        ttl: pgcopy::int(f[4])?,
        ttl_type: pgcopy::int(f[5])?,
        ts: pgcopy::int(f[6])?,
        perms: pgcopy::int(f[7])?,
        refs: pgcopy::bytes(f[8])?,
        salt: f[9].map(<[u8]>::to_vec),
    })
}

type TipTuple = (u64, Vec<u8>, u64, Vec<u8>);
/// (the tip after the block, or None when not checked; records found as chained;
/// operations (seq, payload) the Python path must decide)
type Outcome = (Option<TipTuple>, u64, Vec<(i64, Py<PyBytes>)>);

/// Checks the blocks of the chains one `verify` holds, in order, from pages fed in.
#[pyclass(module = "idres_native")]
pub struct Checker {
    scope: Scope,
    pending: HashSet<String>,
    waiting: VecDeque<(Entry, usize)>, // entries not yet taken, with their page's id
    pages: VecDeque<State>,
    first_page: usize, // the id of pages[0]
    taken: Vec<(Entry, usize)>,
    buf: Vec<u8>,
}

#[pymethods]
impl Checker {
    #[new]
    fn new(me: String, pending: HashSet<String>, applies: PyObject) -> Self {
        Checker {
            scope: Scope {
                me,
                applies,
                by_key: HashMap::new(),
            },
            pending,
            waiting: VecDeque::new(),
            pages: VecDeque::new(),
            first_page: 0,
            taken: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// The next page of the chain being checked (a new chain: `start`).
    fn feed(&mut self, mut page: PyRefMut<'_, Page>) {
        let id = self.first_page + self.pages.len();
        self.pages.push_back(std::mem::take(&mut page.state));
        self.waiting.extend(
            std::mem::take(&mut page.entries)
                .into_iter()
                .map(|e| (e, id)),
        );
    }

    /// Forget the pages of the chain before.
    fn start(&mut self) {
        self.first_page += self.pages.len();
        self.pages.clear();
        self.waiting.clear();
        self.taken.clear();
    }

    /// Check stored block `height` of `chain` (`hash`, `message` as stored) and the
    /// records its operations decide. `tip`: the chain's tip before it, None when a
    /// block before did not check (its entries are then not compared, as in Python).
    /// None: hand the whole block to the Python path (`rows` gives its entries).
    #[pyo3(signature = (chain, key, tip, height, hash, message))]
    #[allow(clippy::too_many_arguments)] // a chain, its key and tip, and a block's row
    fn check(
        &mut self,
        py: Python<'_>,
        chain: &str,
        key: &[u8],
        tip: Option<TipTuple>,
        height: i64,
        hash: &[u8],
        message: &[u8],
    ) -> PyResult<Option<Outcome>> {
        self.take(height);
        let outcome = self.decide_block(py, chain, key, tip, hash, message);
        self.drop_pages();
        outcome
    }

    /// The entries of the block last checked, as `sync.verify` reads rows.
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (e, _) in &self.taken {
            let d = PyDict::new(py);
            d.set_item("seq", e.seq)?;
            d.set_item("height", e.height)?;
            d.set_item("kind", &e.kind)?;
            d.set_item("handle", &e.handle)?;
            d.set_item("version", e.version)?;
            d.set_item("hash", PyBytes::new(py, &e.hash))?;
            d.set_item("payload", PyBytes::new(py, &e.payload))?;
            out.append(d)?;
        }
        Ok(out)
    }
}

impl Checker {
    /// `sync.verify._read`'s merge of the block and entry streams: entries of this
    /// height are the block's, lower ones are passed over, a higher one waits.
    fn take(&mut self, height: i64) {
        self.taken.clear();
        while let Some((e, _)) = self.waiting.front() {
            if e.height > height {
                break;
            }
            let item = self.waiting.pop_front().expect("a front");
            if item.0.height == height {
                self.taken.push(item);
            }
        }
    }

    fn drop_pages(&mut self) {
        let keep = self
            .waiting
            .front()
            .map_or(self.first_page + self.pages.len(), |w| w.1);
        while self.first_page < keep && !self.pages.is_empty() {
            self.pages.pop_front();
            self.first_page += 1;
        }
    }

    fn decide_block(
        &mut self,
        py: Python<'_>,
        chain: &str,
        key: &[u8],
        tip: Option<TipTuple>,
        hash: &[u8],
        message: &[u8],
    ) -> PyResult<Option<Outcome>> {
        let taken = std::mem::take(&mut self.taken);
        let result = self.decide_taken(py, chain, key, tip, hash, message, &taken);
        self.taken = taken;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_taken(
        &mut self,
        py: Python<'_>,
        chain: &str,
        key: &[u8],
        tip: Option<TipTuple>,
        hash: &[u8],
        message: &[u8],
        taken: &[(Entry, usize)],
    ) -> PyResult<Option<Outcome>> {
        let mut ops = Vec::with_capacity(taken.len());
        for (e, page) in taken {
            if e.kind == "op" {
                match record::op(&e.payload) {
                    // one naming another identifier than its row is checked in Python
                    Ok(op) if op.handle == e.handle => ops.push((op, e, *page)),
                    _ => return Ok(None),
                }
            }
        }
        let mut new_tip = None;
        if let Some((height, hash_before, seq, head)) = tip {
            let before = Tip {
                height,
                hash: hash_before,
                seq,
                head,
            };
            let Ok(key) = block::key(key) else {
                return Ok(None);
            };
            let Ok(checked) = block::check(message, hash, &before, &key) else {
                return Ok(None);
            };
            if checked.entries.len() != taken.len() {
                return Ok(None);
            }
            for (n, ((e, _), s)) in taken.iter().zip(&checked.entries).enumerate() {
                let names = match s.kind {
                    "op" => record::op(s.payload).ok().map(|o| (o.handle, o.version)),
                    _ => block::anchor(s.payload)
                        .ok()
                        .map(|(c, h)| (c, i128::from(h))),
                };
                if e.seq != (checked.first + n as u64) as i64
                    || e.kind != s.kind
                    || e.payload != s.payload
                    || e.hash != s.hash
                    || names != Some((e.handle.as_str(), i128::from(e.version)))
                {
                    return Ok(None);
                }
            }
            let t = checked.tip;
            new_tip = Some((t.height, t.hash, t.seq, t.head));
        }
        let (mut records, mut flagged) = (0u64, Vec::new());
        for (op, e, page) in &ops {
            match self.verdict(py, chain, op, *page)? {
                Verdict::Passed => {}
                Verdict::Agrees => records += 1,
                Verdict::Python => flagged.push((e.seq, PyBytes::new(py, &e.payload).unbind())),
            }
        }
        Ok(Some((new_tip, records, flagged)))
    }

    /// `sync.verify._Records.decide` for one operation.
    fn verdict(
        &mut self,
        py: Python<'_>,
        chain: &str,
        op: &record::Op<'_>,
        page: usize,
    ) -> PyResult<Verdict> {
        if self.pending.contains(op.handle) {
            return Ok(Verdict::Passed); // a newer operation waits in the outbox
        }
        let state = &self.pages[page - self.first_page];
        let last = state.last.get(op.handle).map_or(&[][..], Vec::as_slice);
        let stored = state.records.get(op.handle);
        let routing_key = stored.map(|s| s.routing_key.as_str());
        let Some((c, v)) = self.scope.deciding(py, op.handle, last, routing_key)? else {
            // a record no chain holds: said once, in Python
            return Ok(if stored.is_some() {
                Verdict::Python
            } else {
                Verdict::Passed
            });
        };
        if c != chain || i128::from(v) != op.version {
            return Ok(Verdict::Passed); // an older operation, or another chain's
        }
        Ok(match (op.record, stored) {
            (Some(want), Some(s)) if i128::from(s.version) == op.version => {
                let holder = chain == self.scope.me;
                match record::stored(&mut self.buf, op.handle, &s.rows, holder) {
                    Ok(()) if self.buf == want => Verdict::Agrees,
                    _ => Verdict::Python,
                }
            }
            (None, None) => Verdict::Agrees, // deleted, and gone
            _ => Verdict::Python,
        })
    }
}

/// Which chains' operations apply here (`sync.verify._Scope`, which it asks).
struct Scope {
    me: String,
    applies: PyObject, // sync.verify._Scope.applies(chain, handle, routing_key) -> bool
    by_key: HashMap<(String, String), bool>,
}

impl Scope {
    /// `sync.verify._Records._deciding`: the (chain, version) a record must equal.
    fn deciding<'l>(
        &mut self,
        py: Python<'_>,
        handle: &str,
        last: &'l [(String, i64)],
        routing_key: Option<&str>,
    ) -> PyResult<Option<(&'l str, i64)>> {
        if let Some((c, v)) = last.iter().find(|(c, _)| *c == self.me) {
            return Ok(Some((c, *v)));
        }
        let mut best: Option<(i64, &str)> = None;
        for (c, v) in last {
            if self.applies(py, c, handle, routing_key)?
                && best.is_none_or(|b| (*v, c.as_str()) > b)
            {
                best = Some((*v, c));
            }
        }
        Ok(best.map(|(v, c)| (c, v)))
    }

    /// `sync.verify._Scope.applies`, asked of Python once per chain and routing key
    /// where that class decides by the key alone.
    fn applies(
        &mut self,
        py: Python<'_>,
        chain: &str,
        handle: &str,
        key: Option<&str>,
    ) -> PyResult<bool> {
        if chain == self.me {
            return Ok(true);
        }
        let by_key = key.filter(|k| {
            k.strip_prefix("handle:").is_some_and(|p| {
                !k.starts_with("handle:0")
                    && handle.len() > p.len()
                    && handle.starts_with(p)
                    && handle.as_bytes()[p.len()] == b'/'
            })
        });
        if let Some(k) = by_key {
            if let Some(&found) = self.by_key.get(&(chain.to_owned(), k.to_owned())) {
                return Ok(found);
            }
        }
        let found: bool = self.applies.call1(py, (chain, handle, key))?.extract(py)?;
        if let Some(k) = by_key {
            self.by_key.insert((chain.to_owned(), k.to_owned()), found);
        }
        Ok(found)
    }
}

enum Verdict {
    Passed, // not this operation's record to check, or pending
    Agrees, // checked: the record is the one the operation wrote
    Python, // the Python path decides, and says what differs
}
