//! The one unsafe call of the accelerator layer, behind a safe, checked signature:
//! `matrixmultiply::sgemm` on a block of rows of a row-major product. Every index the call can
//! touch is checked against the slices first, so no argument can make it read or write out of
//! bounds. Owns nothing; the CPU backend (`cpu.rs`) decides shapes and threads.
#![allow(unsafe_code)]

/// `c = op(a)[rows i0 .. i0 + rows] · op(b)`, with `op(a)` `m x k` and `op(b)` `k x n` stored
/// row-major in `a` and `b` (transposed storage when `trans_*`), and `c` the `rows x n`
/// row-major block it overwrites (beta = 0: its old contents are not read).
///
/// # Panics
/// When the slices are shorter than the shapes say, or the row block does not fit in `m`: an
/// invariant of the callers, who check shapes at submit (`Kernel::output_shapes`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_rows(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    (m, n, k): (usize, usize, usize),
    (trans_a, trans_b): (bool, bool),
    i0: usize,
    rows: usize,
) {
    if rows == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        i0 + rows <= m && a.len() >= m * k && b.len() >= k * n && c.len() >= rows * n,
        "sgemm_rows: slices shorter than the shapes (m {m}, n {n}, k {k}, rows {i0}+{rows}; \
         a {}, b {}, c {})",
        a.len(),
        b.len(),
        c.len()
    );
    // Strides of op(A) (m x k) and op(B) (k x n) over the stored row-major data.
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: checked above: matrixmultiply reads op(A) rows i0..i0+rows at offsets
    // i*rsa + p*csa (i < i0 + rows <= m, p < k), all below m*k <= a.len(); op(B) at
    // p*rsb + j*csb (p < k, j < n), below k*n <= b.len(); and writes c[i*n + j] for i < rows,
    // j < n, inside `c` (rows*n <= c.len()), which this call borrows exclusively. beta = 0, so
    // `c` is not read as input.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            n,
            1.0,
            a.as_ptr().add(i0 * rsa),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
