//! WGSL sources of the GPU kernels and the uniform parameter blocks they read. One module per
//! kernel family (matmul, elementwise, row ops, Adam); semantics match `cpu.rs` exactly, up to
//! float rounding and summation order. Owns shader text and parameter layouts only: it must not
//! touch devices, buffers or threads (built with or without the `gpu` feature; the constants
//! also describe dispatch sizes).

/// Matmul tile edge: a workgroup (16 x 16 invocations, 4 x 4 outputs each) computes a
/// `TILE x TILE` block of the output, stepping through K 16 at a time.
pub const TILE: usize = 64;
/// Invocations per workgroup of the elementwise and Adam kernels.
pub const ELEMENTWISE_WG: usize = 256;
/// Invocations per workgroup (one row each) of the row kernels.
pub const ROW_WG: usize = 64;

/// Which shader module a kernel uses (the pipeline cache key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    /// Tiled matmul with fused bias and activation.
    MatMul,
    /// Binary and unary elementwise ops.
    Elementwise,
    /// Row reductions, softmax, log-softmax, cross-entropy.
    Rows,
    /// Fused Adam/AdamW.
    Adam,
}

impl Module {
    /// Every module.
    pub const ALL: [Module; 4] = [
        Module::MatMul,
        Module::Elementwise,
        Module::Rows,
        Module::Adam,
    ];

    /// The full WGSL source (shared helpers included).
    pub fn source(self) -> &'static str {
        match self {
            Module::MatMul => MATMUL,
            Module::Elementwise => ELEMENTWISE,
            Module::Rows => ROWS,
            Module::Adam => ADAM,
        }
    }

    /// Short name (labels).
    pub fn name(self) -> &'static str {
        match self {
            Module::MatMul => "percore.matmul",
            Module::Elementwise => "percore.elementwise",
            Module::Rows => "percore.rows",
            Module::Adam => "percore.adam",
        }
    }
}

/// Uniform parameter blocks are 16 words (64 bytes); unused words are zero.
pub const PARAM_WORDS: usize = 16;

/// Shared helpers: tanh clamped so that no driver's `tanh` overflows (tanh(15) is 1 in f32).
macro_rules! common {
    () => {
        r#"
fn tanh_c(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn gelu(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_c(0.7978846 * (x + 0.044715 * x * x * x))); }
"#
    };
}

const MATMUL: &str = concat!(
    common!(),
    r#"
struct MM { m: u32, n: u32, k: u32, trans_a: u32, trans_b: u32, has_bias: u32, act: u32, pad: u32 }
@group(0) @binding(0) var<uniform> P: MM;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
// One 64 x 64 block of C per workgroup of 16 x 16 invocations; each invocation accumulates a
// 4 x 4 register block (rows ty + 16 i, columns tx + 16 j) over K in steps of 16.
var<workgroup> As: array<f32, 1024>; // [kk][m], 16 x 64
var<workgroup> Bs: array<f32, 1024>; // [kk][n], 16 x 64

fn act(x: f32, a: u32) -> f32 {
    switch a {
        case 1u: { return max(x, 0.0); }
        case 2u: { return gelu(x); }
        case 3u: { return tanh_c(x); }
        default: { return x; }
    }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let tid = ty * 16u + tx;
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) { acc[i] = 0.0; }
    for (var t = 0u; t < P.k; t = t + 16u) {
        for (var l = 0u; l < 4u; l = l + 1u) {
            let e = tid + l * 256u;
            let am = e / 16u;
            let ak = e % 16u;
            let gr = row0 + am;
            let gk = t + ak;
            var va = 0.0;
            if (gr < P.m && gk < P.k) {
                if (P.trans_a == 1u) { va = A[gk * P.m + gr]; } else { va = A[gr * P.k + gk]; }
            }
            As[ak * 64u + am] = va;
            let bk = e / 64u;
            let bn = e % 64u;
            let gk2 = t + bk;
            let gc = col0 + bn;
            var vb = 0.0;
            if (gk2 < P.k && gc < P.n) {
                if (P.trans_b == 1u) { vb = B[gc * P.k + gk2]; } else { vb = B[gk2 * P.n + gc]; }
            }
            Bs[bk * 64u + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            let a0 = As[kk * 64u + ty];
            let a1 = As[kk * 64u + ty + 16u];
            let a2 = As[kk * 64u + ty + 32u];
            let a3 = As[kk * 64u + ty + 48u];
            let b0 = Bs[kk * 64u + tx];
            let b1 = Bs[kk * 64u + tx + 16u];
            let b2 = Bs[kk * 64u + tx + 32u];
            let b3 = Bs[kk * 64u + tx + 48u];
            acc[0] = acc[0] + a0 * b0; acc[1] = acc[1] + a0 * b1; acc[2] = acc[2] + a0 * b2; acc[3] = acc[3] + a0 * b3;
            acc[4] = acc[4] + a1 * b0; acc[5] = acc[5] + a1 * b1; acc[6] = acc[6] + a1 * b2; acc[7] = acc[7] + a1 * b3;
            acc[8] = acc[8] + a2 * b0; acc[9] = acc[9] + a2 * b1; acc[10] = acc[10] + a2 * b2; acc[11] = acc[11] + a2 * b3;
            acc[12] = acc[12] + a3 * b0; acc[13] = acc[13] + a3 * b1; acc[14] = acc[14] + a3 * b2; acc[15] = acc[15] + a3 * b3;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = col0 + tx + 16u * j;
            if (r < P.m && c < P.n) {
                var v = acc[i * 4u + j];
                if (P.has_bias == 1u) { v = v + BIAS[c]; }
                C[r * P.n + c] = act(v, P.act);
            }
        }
    }
}
"#
);

const ELEMENTWISE: &str = concat!(
    common!(),
    r#"
struct EW { n: u32, op: u32, stride: u32, pad: u32, scale: f32 }
@group(0) @binding(0) var<uniform> P: EW;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Y: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * P.stride;
    if (i >= P.n) { return; }
    let x = X[i];
    var r = 0.0;
    switch P.op {
        case 0u: { r = x + Y[i]; }
        case 1u: { r = x - Y[i]; }
        case 2u: { r = x * Y[i]; }
        case 3u: { r = x * P.scale; }
        case 4u: { r = max(x, 0.0); }
        case 5u: { r = gelu(x); }
        case 6u: { r = tanh_c(x); }
        default: { r = exp(x); }
    }
    O[i] = r;
}
"#
);

const ROWS: &str = concat!(
    common!(),
    r#"
struct RP { rows: u32, cols: u32, mode: u32, groups_x: u32, inv_rows: f32 }
@group(0) @binding(0) var<uniform> P: RP;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> L: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<storage, read_write> OI: array<u32>;
var<workgroup> sv: array<f32, 64>;
var<workgroup> si: array<u32, 64>;
const LOWEST: f32 = -3.4028235e38;
const NONE: u32 = 0xffffffffu;

fn tree_sum(t: u32, x: f32) -> f32 {
    sv[t] = x;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (t < s) { sv[t] = sv[t] + sv[t + s]; }
        workgroupBarrier();
    }
    let r = sv[0];
    workgroupBarrier();
    return r;
}

fn tree_max(t: u32, x: f32) -> f32 {
    sv[t] = x;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (t < s) { sv[t] = max(sv[t], sv[t + s]); }
        workgroupBarrier();
    }
    let r = sv[0];
    workgroupBarrier();
    return r;
}

// First index of the largest value; NONE marks an empty slot.
fn tree_argmax(t: u32, x: f32, idx: u32) -> u32 {
    sv[t] = x;
    si[t] = idx;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (t < s) {
            let ov = sv[t + s];
            let oi = si[t + s];
            if (oi != NONE && (si[t] == NONE || ov > sv[t] || (ov == sv[t] && oi < si[t]))) {
                sv[t] = ov;
                si[t] = oi;
            }
        }
        workgroupBarrier();
    }
    let r = si[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x + wid.y * P.groups_x;
    if (row >= P.rows) { return; }
    let t = lid.x;
    let base = row * P.cols;
    let mode = P.mode;
    if (mode == 0u) {
        var acc = 0.0;
        for (var c = t; c < P.cols; c = c + 64u) { acc = acc + X[base + c]; }
        let s = tree_sum(t, acc);
        if (t == 0u) { O[row] = s; }
        return;
    }
    if (mode == 2u) {
        var best = LOWEST;
        var bi = NONE;
        for (var c = t; c < P.cols; c = c + 64u) {
            let x = X[base + c];
            if (bi == NONE || x > best) { best = x; bi = c; }
        }
        let r = tree_argmax(t, best, bi);
        if (t == 0u) { OI[row] = r; }
        return;
    }
    var mx = LOWEST;
    for (var c = t; c < P.cols; c = c + 64u) { mx = max(mx, X[base + c]); }
    let m = tree_max(t, mx);
    if (mode == 1u) {
        if (t == 0u) { O[row] = m; }
        return;
    }
    var acc = 0.0;
    for (var c = t; c < P.cols; c = c + 64u) { acc = acc + exp(X[base + c] - m); }
    let s = tree_sum(t, acc);
    if (mode == 3u) {
        for (var c = t; c < P.cols; c = c + 64u) { O[base + c] = exp(X[base + c] - m) / s; }
    } else if (mode == 4u) {
        let ls = log(s);
        for (var c = t; c < P.cols; c = c + 64u) { O[base + c] = X[base + c] - m - ls; }
    } else if (mode == 5u) {
        if (t == 0u) { O[row] = m + log(s) - X[base + L[row]]; }
    } else {
        let hot = L[row];
        for (var c = t; c < P.cols; c = c + 64u) {
            var v = exp(X[base + c] - m) / s;
            if (c == hot) { v = v - 1.0; }
            O[base + c] = v * P.inv_rows;
        }
    }
}
"#
);

const ADAM: &str = concat!(
    common!(),
    r#"
struct AP { n: u32, stride: u32, decoupled: u32, pad: u32, lr: f32, b1: f32, b2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32 }
@group(0) @binding(0) var<uniform> P: AP;
@group(0) @binding(1) var<storage, read_write> W: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> M: array<f32>;
@group(0) @binding(4) var<storage, read_write> V: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * P.stride;
    if (i >= P.n) { return; }
    let p = W[i];
    var g = G[i];
    if (P.decoupled == 0u) { g = g + P.wd * p; }
    let m2 = P.b1 * M[i] + (1.0 - P.b1) * g;
    let v2 = P.b2 * V[i] + (1.0 - P.b2) * g * g;
    let mhat = m2 / P.bc1;
    let vhat = v2 / P.bc2;
    var upd = mhat / (sqrt(vhat) + P.eps);
    if (P.decoupled == 1u) { upd = upd + P.wd * p; }
    W[i] = p - P.lr * upd;
    M[i] = m2;
    V[i] = v2;
}
"#
);
