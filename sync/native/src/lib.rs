//! idres's compiled checker for `idres verify` (sync/verify.py): see checker.rs.

mod block;
mod cbor;
mod checker;
mod pgcopy;
mod record;
#[cfg(test)]
mod tests;

use pyo3::prelude::*;

#[pymodule]
fn idres_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<checker::Page>()?;
    m.add_class::<checker::Checker>()?;
    Ok(())
}
