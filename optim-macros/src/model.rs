//! The typed model of one optimizer definition: what the parse and check stages produce
//! and the generate stage consumes. Every name is resolved; every expression is typed and
//! classified by how often it must be computed.

use proc_macro2::Ident;

/// Kind of a hyperparameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyperKind {
    Float,
    Bool,
    Int,
}

/// A default or range bound, already parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Bool(bool),
    Int(i64),
}

/// One end of a declared range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Unbounded,
    Inclusive(f64),
    Exclusive(f64),
}

/// A declared hyperparameter.
pub struct Hyper {
    pub name: Ident,
    pub kind: HyperKind,
    pub default: Value,
    pub lo: Bound,
    pub hi: Bound,
    pub doc: String,
}

/// How an element-wise state starts.
pub enum Init {
    /// Filled with a per-construction value (hyperparameters and literals only).
    Fill(Expr),
    /// A copy of the parameter.
    CopyOfParam,
}

/// Where a state's values sit: one per element, per row or per column of the last two
/// dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Elem,
    Row,
    Col,
}

impl Shape {
    /// The level of a value held per element, row or column.
    pub fn level(self) -> Level {
        match self {
            Shape::Elem => Level::Elem,
            Shape::Row => Level::Row,
            Shape::Col => Level::Col,
        }
    }
}

/// A state: element-wise (a moment, shaped like the parameter) or factored.
pub struct State {
    pub name: Ident,
    pub init: Init,
    /// Condition under which the state exists (index into `Model::conds`).
    pub when: Option<usize>,
    pub shape: Shape,
    /// Whether the equations keep it non-negative (see `check::sign`): an 8-bit state
    /// then uses the unsigned map.
    pub never_negative: bool,
}

/// A per-parameter scalar state.
pub struct ScalarState {
    pub name: Ident,
    pub init: Expr,
}

/// The whole definition.
pub struct Model {
    /// The fn's visibility, reused for the generated type.
    pub vis: syn::Visibility,
    /// Registry name (`adam`).
    pub name: String,
    /// Generated type name (`Adam`).
    pub type_name: Ident,
    /// Rustdoc written on the fn.
    pub doc: Vec<syn::Attribute>,
    /// Lint attributes (`allow`, `warn`, `deny`, `expect`) written on the fn, kept on the type.
    pub lints: Vec<syn::Attribute>,
    /// The equations as written, for the generated docs.
    pub source: String,
    pub hypers: Vec<Hyper>,
    /// Index of the auto-declared `maximize` in `hypers` (optimizers only).
    pub maximize: Option<usize>,
    /// `None` for wrapper rules (Lookahead), which read no gradient.
    pub grad: Option<Ident>,
    pub states: Vec<State>,
    pub scalars: Vec<ScalarState>,
    /// Optimizer-wide scalar states (`GlobalState`).
    pub globals: Vec<ScalarState>,
    pub lazy_rows: bool,
    /// Distinct per-step boolean conditions, hoisted out of the element loop.
    pub conds: Vec<Expr>,
    /// Reductions, in the order they are computed; read as [`Var::Reduced`].
    pub reductions: Vec<Reduction>,
    /// Matrix functions, read per element as [`Var::Matrix`].
    pub matrices: Vec<MatrixFn>,
    /// The evaluation weights (`#[eval(...)]`), a per-element value.
    pub eval: Option<Expr>,
    pub body: Vec<Stmt>,
}

impl Model {
    /// Whether each element's update reads only that element of the parameter, the
    /// gradient and the element-wise states, besides per-step values and sums over every
    /// parameter (`total_sum`): no per-tensor, per-row or per-column reduction, no row or
    /// column state, no shape value (`numel`, `ndim`, `rows`, `cols`, so no shape
    /// condition) and no matrix function. Such an update gives the same bits on any
    /// split of a parameter into pieces, which is what a flat-sharded optimizer relies on.
    pub fn elementwise(&self) -> bool {
        let mut reads_shape = false;
        let mut look = |e: &Expr| reads_shape |= matches!(e.kind, ExprKind::Var(Var::Shape(_)));
        self.body.iter().for_each(|s| s.visit(&mut look));
        self.conds.iter().for_each(|c| c.visit(&mut look));
        self.reductions.iter().for_each(|r| {
            r.arg.visit(&mut look);
            r.arg2.iter().for_each(|a| a.visit(&mut look));
        });
        self.scalars.iter().for_each(|s| s.init.visit(&mut look));
        self.eval.iter().for_each(|e| e.visit(&mut look));
        !reads_shape
            && self.matrices.is_empty()
            && self.reductions.iter().all(|r| r.op == RedOp::TotalSum)
            && self.states.iter().all(|s| s.shape == Shape::Elem)
    }
}

/// A reduction over the whole tensor (or its rows or columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedOp {
    Sum,
    Mean,
    Norm,
    Rms,
    MaxAbs,
    Dot,
    RowSum,
    RowMean,
    ColSum,
    ColMean,
    /// The sum over every element of every parameter the optimizer steps.
    TotalSum,
}

impl RedOp {
    /// Every reduction: name, operator, arity.
    pub const ALL: &'static [(&'static str, RedOp, usize)] = &[
        ("sum", RedOp::Sum, 1),
        ("mean", RedOp::Mean, 1),
        ("norm", RedOp::Norm, 1),
        ("rms", RedOp::Rms, 1),
        ("max_abs", RedOp::MaxAbs, 1),
        ("dot", RedOp::Dot, 2),
        ("row_sum", RedOp::RowSum, 1),
        ("row_mean", RedOp::RowMean, 1),
        ("col_sum", RedOp::ColSum, 1),
        ("col_mean", RedOp::ColMean, 1),
        ("total_sum", RedOp::TotalSum, 1),
    ];

    pub fn lookup(name: &str) -> Option<(RedOp, usize)> {
        RedOp::ALL
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, f, a)| (f, a))
    }

    /// What the result varies over: one value per tensor, row or column.
    pub fn result_shape(self) -> Option<Shape> {
        match self {
            RedOp::RowSum | RedOp::RowMean => Some(Shape::Row),
            RedOp::ColSum | RedOp::ColMean => Some(Shape::Col),
            _ => None,
        }
    }
}

/// One reduction: `op(arg)` (`dot(arg, arg2)`), computed where it is written.
#[derive(Clone, Debug)]
pub struct Reduction {
    pub op: RedOp,
    /// What the result varies over: `Tensor` (of per-element values), `Matrix` (of
    /// per-row or per-column values), `Row` or `Col` (`row_*`, `col_*`).
    pub level: Level,
    pub arg: Expr,
    pub arg2: Option<Expr>,
}

/// `newton_schulz(arg, steps, a, b, c, eps)` of a 2-D parameter-shaped value.
#[derive(Clone, Debug)]
pub struct MatrixFn {
    pub arg: Expr,
    /// Steps, a, b, c, eps: per-step values.
    pub coefs: Vec<Expr>,
}

/// How often a value must be computed.
///
/// Ordered by how much it varies, except that `Row` and `Col` are unrelated: a value
/// reading both varies per element (see [`Level::join`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Hyperparameters and literals: per construction.
    Const,
    /// Adds optimizer-wide states and sums over every parameter: one number per step
    /// for the whole optimizer.
    Global,
    /// Adds `t` and scalar states: once per step, before the element loop.
    Step,
    /// Adds shapes and reductions: once per tensor (after the pass that reduces).
    Tensor,
    /// Reductions of per-row or per-column values: one per matrix of the last two
    /// dimensions (one in all for a 2-D tensor).
    Matrix,
    /// Adds row states and per-row reductions: once per row of the last two dimensions.
    Row,
    /// Adds column states and per-column reductions.
    Col,
    /// Touches the parameter, the gradient or an element-wise state: per element.
    Elem,
}

impl Level {
    /// The level of a value computed from values of levels `self` and `other`.
    pub fn join(self, other: Level) -> Level {
        match (self, other) {
            (Level::Row, Level::Col) | (Level::Col, Level::Row) => Level::Elem,
            (a, b) => a.max(b),
        }
    }

    /// Whether the value is one number per tensor (computed outside element loops).
    pub fn is_scalar(self) -> bool {
        self <= Level::Tensor
    }
}

/// Type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Float,
    Bool,
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    Hyper(usize),
    Step,
    Param,
    Grad,
    State(usize),
    Scalar(usize),
    Local(usize),
    /// An optimizer-wide scalar state (`GlobalState`).
    Global(usize),
    /// A shape value of the tensor.
    Shape(ShapeVar),
    /// The result of `Model::reductions[k]`.
    Reduced(usize),
    /// The result of `Model::matrices[k]`, read per element.
    Matrix(usize),
}

/// The shape values the equations can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeVar {
    Numel,
    Ndim,
    Rows,
    Cols,
}

impl ShapeVar {
    pub const ALL: &'static [(&'static str, ShapeVar)] = &[
        ("numel", ShapeVar::Numel),
        ("ndim", ShapeVar::Ndim),
        ("rows", ShapeVar::Rows),
        ("cols", ShapeVar::Cols),
    ];
}

/// Built-in element-wise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Sqrt,
    Abs,
    Max,
    Min,
    Powi,
    Powf,
    Exp,
    Ln,
    Signum,
    /// Mathematical sign: −1, 0 or 1 (0 stays 0, NaN stays NaN), as `torch.sign`.
    Sign,
    Cbrt,
    Tanh,
    Square,
    /// `clamp(x, lo, hi)`: `min(max(x, lo), hi)`.
    Clamp,
    /// `round_f32(x)`: `x` rounded to the nearest `f32` (for references that compute a
    /// value in f32 whatever the parameters' precision, as optax's MADGRAD does).
    RoundF32,
}

impl Func {
    /// Every function: name, arity, what it does (for messages).
    pub const ALL: &'static [(&'static str, Func, usize)] = &[
        ("sqrt", Func::Sqrt, 1),
        ("abs", Func::Abs, 1),
        ("max", Func::Max, 2),
        ("min", Func::Min, 2),
        ("powi", Func::Powi, 2),
        ("powf", Func::Powf, 2),
        ("exp", Func::Exp, 1),
        ("ln", Func::Ln, 1),
        ("signum", Func::Signum, 1),
        ("sign", Func::Sign, 1),
        ("cbrt", Func::Cbrt, 1),
        ("tanh", Func::Tanh, 1),
        ("square", Func::Square, 1),
        ("clamp", Func::Clamp, 3),
        ("round_f32", Func::RoundF32, 1),
    ];

    pub fn lookup(name: &str) -> Option<(Func, usize)> {
        Func::ALL
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, f, a)| (f, a))
    }

    pub fn name(self) -> &'static str {
        Func::ALL
            .iter()
            .find(|(_, f, _)| *f == self)
            .map_or("?", |(n, _, _)| n)
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// A typed, classified expression.
#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Ty,
    pub level: Level,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Float(f64),
    /// An integer literal (kept exact for `powi` exponents).
    Int(i64),
    Bool(bool),
    Var(Var),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// `if c { .. } else { .. }` as a value; `cond` indexes `Model::conds` when the
    /// condition is per-step (hoisted), else it is evaluated per element.
    If(Box<Cond>, Box<Block>, Box<Block>),
    Block(Box<Block>),
    /// What an expression already reported as wrong lowers to: accepted everywhere
    /// without further errors, and never generated (the errors stop generation).
    Error,
}

/// A condition: hoisted (an index into `Model::conds`) or evaluated where it stands.
#[derive(Clone, Debug)]
pub enum Cond {
    Hoisted(usize),
    Inline(Expr),
}

/// Statements followed by an optional value.
#[derive(Clone, Debug)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub tail: Option<Expr>,
}

/// What an assignment writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Param,
    Grad,
    /// A state of any shape (element, row, column).
    State(usize),
    Scalar(usize),
    /// An optimizer-wide scalar state.
    Global(usize),
}

#[derive(Clone, Debug)]
pub enum Stmt {
    Let {
        local: usize,
        value: Expr,
    },
    Assign {
        target: Target,
        op: Option<BinOp>,
        value: Expr,
    },
    If {
        cond: Cond,
        then: Block,
        otherwise: Option<Block>,
    },
    /// Computes `Model::reductions[k]` here (its inputs as they are at this point).
    Reduce(usize),
    /// Takes the operand of `Model::matrices[k]` here.
    MatrixArg(usize),
}

impl Expr {
    /// Calls `f` on this expression and on every expression inside it, blocks and
    /// conditions included (not inside reductions: those are in `Model::reductions`).
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Float(_)
            | ExprKind::Int(_)
            | ExprKind::Bool(_)
            | ExprKind::Var(_)
            | ExprKind::Error => {}
            ExprKind::Neg(x) | ExprKind::Not(x) => x.visit(f),
            ExprKind::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            ExprKind::Call(_, xs) => xs.iter().for_each(|x| x.visit(f)),
            ExprKind::If(c, a, b) => {
                if let Cond::Inline(x) = &**c {
                    x.visit(f);
                }
                a.visit(f);
                b.visit(f);
            }
            ExprKind::Block(b) => b.visit(f),
        }
    }
}

impl Block {
    /// [`Expr::visit`] over the statements and the tail.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        self.stmts.iter().for_each(|s| s.visit(f));
        if let Some(t) = &self.tail {
            t.visit(f);
        }
    }
}

impl Stmt {
    /// [`Expr::visit`] over every expression of the statement (inline conditions
    /// included; hoisted ones are in `Model::conds`).
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        match self {
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => value.visit(f),
            Stmt::If {
                cond,
                then,
                otherwise,
            } => {
                if let Cond::Inline(x) = cond {
                    x.visit(f);
                }
                then.visit(f);
                if let Some(o) = otherwise {
                    o.visit(f);
                }
            }
            Stmt::Reduce(_) | Stmt::MatrixArg(_) => {}
        }
    }
}
