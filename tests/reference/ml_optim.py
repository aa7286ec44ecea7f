# Reference values for src/ml/optim tests: PyTorch's documented update rules
# (https://pytorch.org/docs/stable/optim.html, the pseudocode of each algorithm), written
# independently in scalar float64 Python.
import math, struct
f32 = lambda x: struct.unpack('f', struct.pack('f', x))[0]
P0 = [0.5, -1.5, 2.0]
def grad(s): return [f32(0.1 + 0.2*s), f32(-0.3 + 0.15*s), f32(1.0 - 0.5*s)]
def fmt(rows): return "[" + ", ".join("[" + ", ".join(repr(x) for x in r) + "]" for r in rows) + "]"

def sgd(lr, mu=0.0, damp=0.0, wd=0.0, nesterov=False, steps=4):
    p = P0[:]; b = [None]*3; out = []
    for s in range(steps):
        g = grad(s)
        for j in range(3):
            d = g[j] + wd*p[j]
            if mu:
                b[j] = d if b[j] is None else mu*b[j] + (1-damp)*d
                d = d + mu*b[j] if nesterov else b[j]
            p[j] -= lr*d
        out.append(p[:])
    return out

def adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, amsgrad=False, decoupled=False, steps=4):
    p = P0[:]; m=[0.0]*3; v=[0.0]*3; vm=[0.0]*3; out=[]
    for s in range(1, steps+1):
        g = grad(s-1)
        for j in range(3):
            d = g[j]
            if decoupled: p[j] *= 1 - lr*wd
            elif wd: d += wd*p[j]
            m[j] = b1*m[j] + (1-b1)*d
            v[j] = b2*v[j] + (1-b2)*d*d
            mh = m[j]/(1-b1**s)
            if amsgrad:
                vm[j] = max(vm[j], v[j]); vh = vm[j]/(1-b2**s)
            else:
                vh = v[j]/(1-b2**s)
            p[j] -= lr*mh/(math.sqrt(vh)+eps)
        out.append(p[:])
    return out

def rmsprop(lr=1e-2, alpha=0.99, eps=1e-8, wd=0.0, mu=0.0, centered=False, steps=4):
    p=P0[:]; sq=[0.0]*3; ga=[0.0]*3; b=[0.0]*3; out=[]
    for s in range(steps):
        g = grad(s)
        for j in range(3):
            d = g[j] + wd*p[j]
            sq[j] = alpha*sq[j] + (1-alpha)*d*d
            vt = sq[j]
            if centered:
                ga[j] = alpha*ga[j] + (1-alpha)*d
                vt = vt - ga[j]**2
            if mu > 0:
                b[j] = mu*b[j] + d/(math.sqrt(vt)+eps)
                p[j] -= lr*b[j]
            else:
                p[j] -= lr*d/(math.sqrt(vt)+eps)
        out.append(p[:])
    return out

def adagrad(lr=1e-2, decay=0.0, wd=0.0, init=0.0, eps=1e-10, steps=4):
    p=P0[:]; st=[init]*3; out=[]
    for t in range(1, steps+1):
        g = grad(t-1)
        clr = lr/(1+(t-1)*decay)
        for j in range(3):
            d = g[j] + wd*p[j]
            st[j] += d*d
            p[j] -= clr*d/(math.sqrt(st[j])+eps)
        out.append(p[:])
    return out

print("SGD_MOMENTUM_WD", fmt(sgd(0.1, mu=0.9, wd=0.01)))
print("SGD_NESTEROV", fmt(sgd(0.1, mu=0.9, nesterov=True)))
print("SGD_DAMPENING", fmt(sgd(0.1, mu=0.9, damp=0.5)))
print("SGD_PLAIN", fmt(sgd(0.1)))
print("ADAM_DEFAULT_LR01", fmt(adam(lr=0.1)))
print("ADAM_AMSGRAD_WD", fmt(adam(lr=0.1, wd=0.1, amsgrad=True)))
print("ADAMW", fmt(adam(lr=0.1, wd=0.1, decoupled=True)))
print("RMSPROP_DEFAULT", fmt(rmsprop()))
print("RMSPROP_CENTERED_MOMENTUM_WD", fmt(rmsprop(centered=True, mu=0.5, wd=0.1)))
print("ADAGRAD", fmt(adagrad(lr=0.1, decay=0.01, wd=0.1, init=0.1)))
