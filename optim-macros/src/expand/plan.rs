//! The passes of a step whose equations use reductions, factored states or matrix
//! functions: which statements run in which pass over the elements, and when each state
//! is written back.
//!
//! # The rule
//!
//! Every value gets the first pass in which it can be computed (`avail`): per-element
//! values without reductions in pass 0; a reduction of a value computed in pass `p` is
//! known after pass `p` (in *section* `p + 1`, the per-tensor code between pass `p` and
//! pass `p + 1`), and so is a matrix function of it; anything reading it comes after.
//!
//! Each parameter-shaped value (the parameter, element-wise states) is written back to
//! memory exactly once per step, in the pass that computes its final value (`store`).
//! A later pass that needs a per-element value *recomputes* it from what memory holds:
//! values written back by an earlier pass are read as stored (their final values), and
//! everything else is recomputed from the gradient and from values not yet written back.
//! When a later pass needs a value from before a state's final assignment, that state's
//! write-back moves to that later pass, so its old value is still in memory there (a
//! fixed point: write-backs only move later). No scratch buffer is ever needed for it:
//! the price is recomputing a few operations per element, while memory traffic (what
//! the passes cost) is the same or less than spilling (LAMB: its update direction `u` is
//! recomputed in pass 1 from the stored `m`, `v` and the not yet written `w`).
//!
//! Per-tensor code (lets, scalar-state and row/column-state assignments) runs once, in
//! the section where its inputs are known, in the order written; an assignment is kept
//! after every earlier read of the value it replaces.

use crate::model::*;
use std::collections::{HashMap, HashSet};

/// What the element loops read and write: the parameter, the gradient, element-wise
/// states and per-element `let`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mem {
    Param,
    Grad,
    State(usize),
    Local(usize),
}

/// A statement's identity: its address in the model (which does not move while the
/// code is generated).
pub type StmtId = usize;

pub fn id(s: &Stmt) -> StmtId {
    s as *const Stmt as usize
}

/// One piece of per-tensor code, in the order written.
#[derive(Clone, Debug)]
pub struct Item<'a> {
    /// The section it runs in (0: before the first pass; `passes`: after the last).
    pub section: usize,
    /// Enclosing hoisted conditions and their arm: the item runs only under them.
    pub guard: Vec<(usize, bool)>,
    pub kind: ItemKind<'a>,
}

#[derive(Clone, Copy, Debug)]
pub enum ItemKind<'a> {
    /// A per-tensor `let` or an assignment to a scalar, row or column state.
    Stmt(&'a Stmt),
    /// A per-tensor value used per element, computed once into the kernel's temporaries.
    Temp(&'a Expr),
    /// Hoisted condition `k`, evaluated here.
    Cond(usize),
    /// A reduction of row or column values, computed here.
    SectionReduce(usize),
    /// Matrix function `k`, applied here to the operand the pass before took.
    Matrix(usize),
    /// Optimizer-wide code (a global `let` or an assignment to a global state): runs
    /// once per step, before the phase its section belongs to.
    Global(&'a Stmt),
    /// An optimizer-wide condition, evaluated once in the optimizer-wide code (where it
    /// is first met) for every parameter to read.
    GlobalCond(usize),
}

/// The pass structure of one definition.
pub struct Plan<'a> {
    /// Per-tensor code in order.
    pub items: Vec<Item<'a>>,
    /// Passes over the elements (at least 1).
    pub passes: usize,
    /// First pass (or section) each statement can run in.
    pub stmt_pass: HashMap<StmtId, usize>,
    /// For reductions of per-element values: the pass that accumulates them.
    pub red_pass: Vec<Option<usize>>,
    /// The pass that takes each matrix function's operand.
    pub mat_pass: Vec<usize>,
    /// The pass that writes each element-wise state back (`None`: only read).
    pub state_store: Vec<Option<usize>>,
    /// The pass that writes the parameter back.
    pub param_store: usize,
    /// Per pass, the element statements it runs.
    pub needed: Vec<HashSet<StmtId>>,
    /// Per pass, what it loads at each element.
    pub loads: Vec<HashSet<Mem>>,
    /// Sections that start a new phase (after a pass whose `total_sum`s every later
    /// section needs), in order.
    pub barriers: Vec<usize>,
    /// Definitions the passes cannot honour, as messages.
    pub errors: Vec<String>,
}

impl Plan<'_> {
    /// The phase section (or pass) `s` belongs to.
    pub fn phase_of(&self, s: usize) -> usize {
        self.barriers.iter().filter(|&&b| b <= s).count()
    }

    /// Phases of a step.
    pub fn phases(&self) -> usize {
        self.barriers.len() + 1
    }

    /// The pass writing `m` back, if any.
    pub fn store_of(&self, m: Mem) -> Option<usize> {
        match m {
            Mem::Param => Some(self.param_store),
            Mem::State(i) => self.state_store.get(i).copied().flatten(),
            Mem::Grad | Mem::Local(_) => None,
        }
    }

    /// Whether pass `p` writes `m` back.
    pub fn stores_in(&self, m: Mem, p: usize) -> bool {
        self.store_of(m) == Some(p)
    }
}

/// What a variable read means for the element loops.
fn mem_of(m: &Model, locals: &HashMap<usize, Level>, v: Var) -> Option<Mem> {
    match v {
        Var::Param => Some(Mem::Param),
        Var::Grad => Some(Mem::Grad),
        Var::State(i) if m.states[i].shape == Shape::Elem => Some(Mem::State(i)),
        Var::Local(id) if locals.get(&id).is_some_and(|l| !l.is_scalar()) => Some(Mem::Local(id)),
        _ => None,
    }
}

/// A per-tensor variable (its versions are ordered by sections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Mem(Mem),
    Scalar(usize),
    /// A row or column state.
    Factor(usize),
    Local(usize),
    Global(usize),
}

fn key_of_var(m: &Model, v: Var) -> Option<Key> {
    match v {
        Var::Param => Some(Key::Mem(Mem::Param)),
        Var::Grad => Some(Key::Mem(Mem::Grad)),
        Var::State(i) if m.states[i].shape == Shape::Elem => Some(Key::Mem(Mem::State(i))),
        Var::State(i) => Some(Key::Factor(i)),
        Var::Scalar(i) => Some(Key::Scalar(i)),
        Var::Global(i) => Some(Key::Global(i)),
        Var::Local(id) => Some(Key::Local(id)),
        _ => None,
    }
}

fn key_of_target(m: &Model, t: Target) -> Key {
    match t {
        Target::Param => Key::Mem(Mem::Param),
        Target::Grad => Key::Mem(Mem::Grad),
        Target::State(i) if m.states[i].shape == Shape::Elem => Key::Mem(Mem::State(i)),
        Target::State(i) => Key::Factor(i),
        Target::Scalar(i) => Key::Scalar(i),
        Target::Global(i) => Key::Global(i),
    }
}

/// Whether a statement is optimizer-wide code.
pub fn is_global_stmt(s: &Stmt) -> bool {
    match s {
        Stmt::Let { value, .. } => value.level == Level::Global,
        Stmt::Assign { target, .. } => matches!(target, Target::Global(_)),
        _ => false,
    }
}

/// Whether a statement runs in the element loops (else it is per-tensor code).
pub fn is_element_stmt(m: &Model, s: &Stmt) -> bool {
    match s {
        Stmt::Let { value, .. } => !value.level.is_scalar(),
        Stmt::Assign { target, .. } => match target {
            Target::Param | Target::Grad => true,
            Target::State(i) => m.states[*i].shape == Shape::Elem,
            Target::Scalar(_) | Target::Global(_) => false,
        },
        Stmt::If {
            then, otherwise, ..
        } => {
            then.stmts.iter().any(|s| is_element_stmt(m, s))
                || otherwise
                    .as_ref()
                    .is_some_and(|o| o.stmts.iter().any(|s| is_element_stmt(m, s)))
        }
        Stmt::Reduce(k) => {
            m.reductions[*k].arg.level == Level::Elem
                || m.reductions[*k]
                    .arg2
                    .as_ref()
                    .is_some_and(|a| a.level == Level::Elem)
        }
        Stmt::MatrixArg(_) => true,
    }
}

struct Builder<'a> {
    m: &'a Model,
    /// Level of every `let`.
    locals: HashMap<usize, Level>,
    /// Statement order (preorder index).
    order: HashMap<StmtId, usize>,
    /// Per element memory variable: the order of its textually last assignment.
    last_assign: HashMap<Mem, usize>,
    env: HashMap<Key, usize>,
    /// Per per-tensor variable: the latest section reading its current version.
    last_read: HashMap<Key, usize>,
    stmt_pass: HashMap<StmtId, usize>,
    red_pass: Vec<Option<usize>>,
    red_avail: Vec<usize>,
    mat_pass: Vec<usize>,
    mat_avail: Vec<usize>,
    /// Highest pass any element work needs.
    top_pass: usize,
    items: Vec<Item<'a>>,
    /// Whether `forward` records items (off while it only computes availability).
    recording: bool,
    guard: Vec<(usize, bool)>,
    conds_seen: HashSet<usize>,
    /// Per global state: the latest section a per-parameter value read its current
    /// version in.
    param_reads: HashMap<usize, usize>,
    /// Global assignments: (state, section, latest per-parameter read of the old value).
    global_writes: Vec<(usize, usize, usize)>,
    /// Whether the statement being walked is optimizer-wide code.
    in_global: bool,
}

/// Builds the plan of a definition.
pub fn plan(m: &Model) -> Plan<'_> {
    let mut b = Builder {
        m,
        locals: HashMap::new(),
        order: HashMap::new(),
        last_assign: HashMap::new(),
        env: HashMap::new(),
        last_read: HashMap::new(),
        stmt_pass: HashMap::new(),
        red_pass: vec![None; m.reductions.len()],
        red_avail: vec![0; m.reductions.len()],
        mat_pass: vec![0; m.matrices.len()],
        mat_avail: vec![0; m.matrices.len()],
        top_pass: 0,
        items: Vec::new(),
        recording: true,
        guard: Vec::new(),
        conds_seen: HashSet::new(),
        param_reads: HashMap::new(),
        global_writes: Vec::new(),
        in_global: false,
    };
    let mut n = 0;
    b.number(&m.body, &mut n);
    // `#[when]` conditions decide which states exist: known before anything runs.
    for s in &m.states {
        if let Some(k) = s.when {
            b.cond_item(k, 0);
        }
    }
    b.forward(&m.body, 0);
    let passes = b.top_pass + 1;
    let final_pass = |k: Key, env: &HashMap<Key, usize>| env.get(&k).copied().unwrap_or(0);
    let mut state_store: Vec<Option<usize>> = (0..m.states.len())
        .map(|i| {
            let assigned = b.last_assign.contains_key(&Mem::State(i));
            (m.states[i].shape == Shape::Elem && assigned)
                .then(|| final_pass(Key::Mem(Mem::State(i)), &b.env).min(passes - 1))
        })
        .collect();
    let mut param_store = final_pass(Key::Mem(Mem::Param), &b.env).min(passes - 1);
    // Fixed point: a pass that needs a value from before a final assignment keeps the
    // write-back at least that late. Write-backs only move later, so this ends.
    loop {
        let mut barriers: Vec<usize> = m
            .reductions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.op == RedOp::TotalSum)
            .map(|(k, _)| b.red_avail[k])
            .collect();
        barriers.sort_unstable();
        barriers.dedup();
        let mut plan = Plan {
            barriers,
            errors: Vec::new(),
            items: b.items.clone(),
            passes,
            stmt_pass: HashMap::new(),
            red_pass: b.red_pass.clone(),
            mat_pass: b.mat_pass.clone(),
            state_store: state_store.clone(),
            param_store,
            needed: Vec::new(),
            loads: Vec::new(),
        };
        let mut later: Vec<(Mem, usize)> = Vec::new();
        for p in 0..passes {
            let mut slice = Slice {
                b: &b,
                plan: &plan,
                p,
                needed: HashSet::new(),
                later: &mut later,
            };
            let mut live: HashSet<Mem> = HashSet::new();
            live.insert(Mem::Param);
            for i in 0..m.states.len() {
                if plan.stores_in(Mem::State(i), p) {
                    live.insert(Mem::State(i));
                }
            }
            if p != plan.param_store {
                live.remove(&Mem::Param);
            }
            slice.stmts(&m.body, &mut live);
            let needed = slice.needed;
            for i in 0..m.states.len() {
                if plan.stores_in(Mem::State(i), p) {
                    live.insert(Mem::State(i));
                }
            }
            if p == plan.param_store {
                live.insert(Mem::Param);
            }
            live.retain(|x| !matches!(x, Mem::Local(_)));
            plan.needed.push(needed);
            plan.loads.push(live);
        }
        if later.is_empty() {
            for &(i, at, read) in &b.global_writes {
                if plan.phase_of(at) <= plan.phase_of(read) {
                    let name = &m.globals[i].name;
                    plan.errors.push(format!("global state `{name}` is read per parameter before an assignment to it that runs in the same phase of the step (the phases are split by `total_sum`); read it only after the assignment, or assign it after a `total_sum` the reads come before"));
                }
            }
            plan.stmt_pass = b.stmt_pass;
            return plan;
        }
        for (mem, p) in later {
            match mem {
                Mem::Param => param_store = param_store.max(p),
                Mem::State(i) => {
                    if let Some(s) = state_store[i].as_mut() {
                        *s = (*s).max(p);
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'a> Builder<'a> {
    fn number(&mut self, stmts: &[Stmt], n: &mut usize) {
        for s in stmts {
            self.order.insert(id(s), *n);
            *n += 1;
            match s {
                Stmt::Let { local, value } => {
                    self.locals.insert(*local, value.level);
                    self.number_expr(value, n);
                }
                Stmt::Assign { target, value, .. } => {
                    if let Key::Mem(mem) = key_of_target(self.m, *target) {
                        self.last_assign.insert(mem, *n - 1);
                    }
                    self.number_expr(value, n);
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    if let Cond::Inline(x) = cond {
                        self.number_expr(x, n);
                    }
                    self.number(&then.stmts, n);
                    if let Some(t) = &then.tail {
                        self.number_expr(t, n);
                    }
                    if let Some(o) = otherwise {
                        self.number(&o.stmts, n);
                        if let Some(t) = &o.tail {
                            self.number_expr(t, n);
                        }
                    }
                }
                Stmt::Reduce(_) | Stmt::MatrixArg(_) => {}
            }
        }
    }

    /// Numbers the statements of blocks inside an expression (value `if`s, blocks).
    fn number_expr(&mut self, x: &Expr, n: &mut usize) {
        match &x.kind {
            ExprKind::If(_, a, b) => {
                for blk in [a, b] {
                    self.number(&blk.stmts, n);
                    if let Some(t) = &blk.tail {
                        self.number_expr(t, n);
                    }
                }
            }
            ExprKind::Block(blk) => {
                self.number(&blk.stmts, n);
                if let Some(t) = &blk.tail {
                    self.number_expr(t, n);
                }
            }
            ExprKind::Neg(a) | ExprKind::Not(a) => self.number_expr(a, n),
            ExprKind::Binary(_, a, b) => {
                self.number_expr(a, n);
                self.number_expr(b, n);
            }
            ExprKind::Call(_, xs) => xs.iter().for_each(|a| self.number_expr(a, n)),
            _ => {}
        }
    }

    /// The first section/pass where `x` can be computed, at this point of the body.
    pub fn avail(&mut self, x: &'a Expr) -> usize {
        let m_: &'a Model = self.m;
        match &x.kind {
            ExprKind::Float(_) | ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Error => 0,
            ExprKind::Var(v) => match *v {
                Var::Reduced(k) => self.red_avail.get(k).copied().unwrap_or(0),
                Var::Matrix(k) => self.mat_avail.get(k).copied().unwrap_or(0),
                v => key_of_var(self.m, v)
                    .and_then(|k| self.env.get(&k).copied())
                    .unwrap_or(0),
            },
            ExprKind::Neg(a) | ExprKind::Not(a) => self.avail(a),
            ExprKind::Binary(_, a, b) => self.avail(a).max(self.avail(b)),
            ExprKind::Call(_, xs) => xs.iter().map(|a| self.avail(a)).max().unwrap_or(0),
            ExprKind::If(c, a, b) => {
                let c = match &**c {
                    Cond::Hoisted(k) => {
                        let cond = &m_.conds[*k];
                        self.avail(cond)
                    }
                    Cond::Inline(x) => self.avail(x),
                };
                let (saved, rec) = (self.env.clone(), self.recording);
                self.recording = false;
                let a = self.block_avail(a, c);
                self.env = saved.clone();
                let b = self.block_avail(b, c);
                self.env = saved;
                self.recording = rec;
                c.max(a).max(b)
            }
            ExprKind::Block(blk) => {
                let (saved, rec) = (self.env.clone(), self.recording);
                self.recording = false;
                let a = self.block_avail(blk, 0);
                self.env = saved;
                self.recording = rec;
                a
            }
        }
    }

    fn item(&mut self, section: usize, kind: ItemKind<'a>) {
        if self.recording {
            self.items.push(Item {
                section,
                guard: self.guard.clone(),
                kind,
            });
        }
    }

    /// Evaluates hoisted condition `k` (once, where it is first met); returns its section.
    fn cond_item(&mut self, k: usize, floor: usize) -> usize {
        let m_: &'a Model = self.m;
        let x = &m_.conds[k];
        let a = self.avail(x).max(floor);
        let global = x.level == Level::Global;
        if !global {
            self.note_reads(x, a);
        }
        if self.recording && self.conds_seen.insert(k) {
            let guard = std::mem::take(&mut self.guard);
            if global {
                self.item(a, ItemKind::GlobalCond(k));
            }
            self.item(a, ItemKind::Cond(k));
            self.guard = guard;
        }
        a
    }

    /// Records the per-tensor parts of a per-element expression as temporaries (the
    /// largest per-tensor subexpressions, as the element code reads them) and the
    /// per-tensor code in its blocks.
    fn hoist_walk(&mut self, x: &'a Expr, floor: usize) {
        if x.level.is_scalar() {
            let a = self.avail(x).max(floor);
            self.note_reads(x, a);
            self.item(a, ItemKind::Temp(x));
            return;
        }
        match &x.kind {
            ExprKind::Neg(a) | ExprKind::Not(a) => self.hoist_walk(a, floor),
            ExprKind::Binary(_, a, b) => {
                self.hoist_walk(a, floor);
                self.hoist_walk(b, floor);
            }
            ExprKind::Call(_, xs) => xs.iter().for_each(|a| self.hoist_walk(a, floor)),
            ExprKind::If(c, a, b) => {
                let (c, k) = match &**c {
                    Cond::Hoisted(k) => (self.cond_item(*k, floor), Some(*k)),
                    Cond::Inline(x) => {
                        self.hoist_walk(x, floor);
                        (floor, None)
                    }
                };
                for (blk, arm) in [(a, true), (b, false)] {
                    let saved = self.env.clone();
                    self.guard.extend(k.map(|k| (k, arm)));
                    self.forward(&blk.stmts, c);
                    if let Some(t) = &blk.tail {
                        self.hoist_walk(t, c);
                    }
                    if k.is_some() {
                        self.guard.pop();
                    }
                    self.env = saved;
                }
            }
            ExprKind::Block(blk) => {
                let saved = self.env.clone();
                self.forward(&blk.stmts, floor);
                if let Some(t) = &blk.tail {
                    self.hoist_walk(t, floor);
                }
                self.env = saved;
            }
            ExprKind::Float(_)
            | ExprKind::Int(_)
            | ExprKind::Bool(_)
            | ExprKind::Var(_)
            | ExprKind::Error => {}
        }
    }

    fn block_avail(&mut self, blk: &'a Block, floor: usize) -> usize {
        self.forward(&blk.stmts, floor);
        blk.tail
            .as_ref()
            .map_or(floor, |t| self.avail(t).max(floor))
    }

    /// Records that the per-tensor variables `x` reads are read in section `at`.
    fn note_reads(&mut self, x: &Expr, at: usize) {
        let m = self.m;
        let (last_read, param_reads) = (&mut self.last_read, &mut self.param_reads);
        let per_param = !self.in_global;
        x.visit(&mut |e| {
            if let ExprKind::Var(v) = e.kind {
                match key_of_var(m, v) {
                    Some(k @ (Key::Scalar(_) | Key::Factor(_))) => {
                        let r = last_read.entry(k).or_insert(0);
                        *r = (*r).max(at);
                    }
                    Some(Key::Global(i)) if per_param => {
                        let r = param_reads.entry(i).or_insert(0);
                        *r = (*r).max(at);
                    }
                    _ => {}
                }
            }
        });
    }

    fn forward(&mut self, stmts: &'a [Stmt], floor: usize) {
        let m_: &'a Model = self.m;
        for s in stmts {
            let element = is_element_stmt(self.m, s);
            let a = match s {
                Stmt::Let { local, value } if is_global_stmt(s) => {
                    let a = self.avail(value).max(floor);
                    self.in_global = true;
                    self.note_reads(value, a);
                    self.in_global = false;
                    self.item(a, ItemKind::Global(s));
                    self.env.insert(Key::Local(*local), a);
                    a
                }
                Stmt::Assign {
                    target: Target::Global(i),
                    op,
                    value,
                } => {
                    let key = Key::Global(*i);
                    let mut a = self.avail(value).max(floor);
                    if op.is_some() {
                        a = a.max(self.env.get(&key).copied().unwrap_or(0));
                    }
                    self.in_global = true;
                    self.note_reads(value, a);
                    self.in_global = false;
                    if let (Some(read), true) = (self.param_reads.remove(i), self.recording) {
                        self.global_writes.push((*i, a, read));
                    }
                    self.item(a, ItemKind::Global(s));
                    self.env.insert(key, a);
                    a
                }
                Stmt::Let { local, value } => {
                    let a = self.avail(value).max(floor);
                    self.note_reads(value, a);
                    if element {
                        self.hoist_walk(value, floor);
                    } else {
                        self.item(a, ItemKind::Stmt(s));
                    }
                    self.env.insert(Key::Local(*local), a);
                    a
                }
                Stmt::Assign { target, op, value } => {
                    let key = key_of_target(self.m, *target);
                    let mut a = self.avail(value).max(floor);
                    if op.is_some() {
                        a = a.max(self.env.get(&key).copied().unwrap_or(0));
                    }
                    self.note_reads(value, a);
                    if matches!(key, Key::Scalar(_) | Key::Factor(_)) {
                        // After every read of the value it replaces.
                        a = a.max(self.last_read.get(&key).copied().unwrap_or(0));
                        self.last_read.insert(key, 0);
                        self.item(a, ItemKind::Stmt(s));
                    } else {
                        self.hoist_walk(value, floor);
                    }
                    self.env.insert(key, a);
                    a
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let (c, hoisted) = match cond {
                        Cond::Hoisted(k) => (self.cond_item(*k, floor), Some(*k)),
                        Cond::Inline(x) => {
                            let c = self.avail(x).max(floor);
                            self.note_reads(x, c);
                            self.hoist_walk(x, floor);
                            (c, None)
                        }
                    };
                    let saved = self.env.clone();
                    self.guard.extend(hoisted.map(|k| (k, true)));
                    self.forward(&then.stmts, c);
                    if hoisted.is_some() {
                        self.guard.pop();
                    }
                    let after_then = std::mem::replace(&mut self.env, saved);
                    if let Some(o) = otherwise {
                        self.guard.extend(hoisted.map(|k| (k, false)));
                        self.forward(&o.stmts, c);
                        if hoisted.is_some() {
                            self.guard.pop();
                        }
                    }
                    for (k, v) in after_then {
                        let e = self.env.entry(k).or_insert(0);
                        *e = (*e).max(v);
                    }
                    c
                }
                Stmt::Reduce(k) => {
                    let r = &m_.reductions[*k];
                    let mut a = self.avail(&r.arg).max(floor);
                    if let Some(a2) = &r.arg2 {
                        a = a.max(self.avail(a2));
                    }
                    self.note_reads(&r.arg, a);
                    if element {
                        self.hoist_walk(&r.arg, floor);
                        if let Some(a2) = &r.arg2 {
                            self.hoist_walk(a2, floor);
                        }
                        self.red_pass[*k] = Some(a);
                        self.red_avail[*k] = a + 1;
                    } else {
                        // Of row or column values: computed in the section itself.
                        self.red_avail[*k] = a;
                        self.item(a, ItemKind::SectionReduce(*k));
                    }
                    a
                }
                Stmt::MatrixArg(k) => {
                    let mx = &m_.matrices[*k];
                    let mut a = self.avail(&mx.arg).max(floor);
                    for c in &mx.coefs {
                        a = a.max(self.avail(c));
                    }
                    self.hoist_walk(&mx.arg, floor);
                    self.mat_pass[*k] = a;
                    self.mat_avail[*k] = a + 1;
                    for c in &mx.coefs {
                        self.note_reads(c, a + 1);
                    }
                    let guard = std::mem::take(&mut self.guard);
                    self.item(a + 1, ItemKind::Matrix(*k));
                    self.guard = guard;
                    a
                }
            };
            self.stmt_pass.insert(id(s), a);
            if element {
                self.top_pass = self.top_pass.max(a);
            }
        }
    }
}

/// The backward walk that finds what one pass runs.
struct Slice<'a, 'b> {
    b: &'a Builder<'b>,
    plan: &'a Plan<'b>,
    p: usize,
    needed: HashSet<StmtId>,
    /// Write-backs that must move later: (variable, pass).
    later: &'a mut Vec<(Mem, usize)>,
}

impl Slice<'_, '_> {
    /// Marks what pass `p` needs of `stmts` for `live` (what is needed after them),
    /// leaving in `live` what is needed before them.
    fn stmts(&mut self, stmts: &[Stmt], live: &mut HashSet<Mem>) {
        for s in stmts.iter().rev() {
            let sid = id(s);
            match s {
                Stmt::Let { local, value }
                    if !value.level.is_scalar() && live.remove(&Mem::Local(*local)) =>
                {
                    self.needed.insert(sid);
                    self.reads(value, sid, live);
                }
                Stmt::Assign { target, op, value } if is_element_stmt(self.b.m, s) => {
                    let Key::Mem(x) = key_of_target(self.b.m, *target) else {
                        continue;
                    };
                    let written_before = self.plan.store_of(x).is_some_and(|st| st < self.p);
                    if written_before || !live.contains(&x) {
                        continue;
                    }
                    self.needed.insert(sid);
                    live.remove(&x);
                    if op.is_some() {
                        live.insert(x);
                    }
                    self.reads(value, sid, live);
                }
                Stmt::If {
                    cond,
                    then,
                    otherwise,
                } => {
                    let before = self.needed.len();
                    let mut lt = live.clone();
                    self.stmts(&then.stmts, &mut lt);
                    let mut le = live.clone();
                    if let Some(o) = otherwise {
                        self.stmts(&o.stmts, &mut le);
                    }
                    if self.needed.len() > before {
                        self.needed.insert(sid);
                        *live = &lt | &le;
                        if let Cond::Inline(x) = cond {
                            self.reads(x, sid, live);
                        }
                    }
                }
                Stmt::Reduce(k) if self.plan.red_pass[*k] == Some(self.p) => {
                    self.needed.insert(sid);
                    let r = &self.b.m.reductions[*k];
                    self.reads(&r.arg, sid, live);
                    if let Some(a2) = &r.arg2 {
                        self.reads(a2, sid, live);
                    }
                }
                Stmt::MatrixArg(k) if self.plan.mat_pass[*k] == self.p => {
                    self.needed.insert(sid);
                    self.reads(&self.b.m.matrices[*k].arg, sid, live);
                }
                _ => {}
            }
        }
    }

    /// Adds what `x` (in statement `sid`) reads to `live`; a read of a value that an
    /// earlier pass already overwrote moves that write-back to this pass.
    fn reads(&mut self, x: &Expr, sid: StmtId, live: &mut HashSet<Mem>) {
        let at = self.b.order.get(&sid).copied().unwrap_or(0);
        let mut found = Vec::new();
        x.visit(&mut |e| {
            if let ExprKind::Var(v) = e.kind {
                if let Some(mem) = mem_of(self.b.m, &self.b.locals, v) {
                    found.push(mem);
                }
            }
        });
        // Lets inside value blocks are element lets too; their uses were collected above.
        for mem in found {
            if let Some(st) = self.plan.store_of(mem) {
                let is_final = self.b.last_assign.get(&mem).is_none_or(|&last| at > last);
                if st < self.p && !is_final {
                    self.later.push((mem, self.p));
                }
            }
            live.insert(mem);
        }
    }
}
