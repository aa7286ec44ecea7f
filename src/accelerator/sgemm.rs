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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3x2 · 2x2 product, by rows in two blocks, plain and transposed storage; checked
    /// against the sums written out by hand. Small enough for Miri.
    #[test]
    fn row_blocks_match_the_written_out_product() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3x2
        let b = [1.0, -1.0, 0.5, 2.0]; // 2x2
        let want = [2.0, 3.0, 5.0, 5.0, 8.0, 7.0];
        let mut c = [0.0f32; 6];
        let (top, bottom) = c.split_at_mut(2);
        sgemm_rows(&a, &b, top, (3, 2, 2), (false, false), 0, 1);
        sgemm_rows(&a, &b, bottom, (3, 2, 2), (false, false), 1, 2);
        assert_eq!(c, want);
        // The same with A and B stored transposed.
        let at = [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]; // 2x3
        let bt = [1.0, 0.5, -1.0, 2.0];
        let mut c2 = [0.0f32; 6];
        sgemm_rows(&at, &bt, &mut c2, (3, 2, 2), (true, true), 0, 3);
        assert_eq!(c2, want);
    }

    #[test]
    #[should_panic(expected = "slices shorter than the shapes")]
    fn short_slices_are_refused_before_the_call() {
        let mut c = [0.0f32; 4];
        sgemm_rows(
            &[1.0; 3],
            &[1.0; 4],
            &mut c,
            (2, 2, 2),
            (false, false),
            0,
            2,
        );
    }
}
