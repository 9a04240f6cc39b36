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

/// An element-wise state (moment), shaped like the parameter.
pub struct State {
    pub name: Ident,
    pub init: Init,
    /// Condition under which the state exists (index into `Model::conds`).
    pub when: Option<usize>,
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
    pub lazy_rows: bool,
    /// Distinct per-step boolean conditions, hoisted out of the element loop.
    pub conds: Vec<Expr>,
    pub body: Vec<Stmt>,
}

/// How often a value must be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Hyperparameters and literals: per construction.
    Const,
    /// Adds `t` and scalar states: once per step, before the element loop.
    Step,
    /// Touches the parameter, the gradient or an element-wise state: per element.
    Elem,
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
    State(usize),
    Scalar(usize),
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
}
