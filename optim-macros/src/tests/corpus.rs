//! Valid definitions, copied from the zoo (plus one using every function and integer,
//! negative and typed hyperparameters): the starting points of the mutation tests.

/// `(attribute arguments, item)` of valid definitions, copied from the zoo.
pub const VALID: &[(&str, &str)] = &[
    (
        "/// Learning rate α.
        lr = 1e-3 in 0.0.., momentum = 0.0 in 0.0.., dampening = 0.0 in 0.0..=1.0,
        nesterov = false, weight_decay = 0.0 in 0.0..,",
        "pub fn sgd(w: Param, g: Grad, #[when(momentum > 0.0)] b: State) {
            g += weight_decay * w;
            if momentum > 0.0 {
                b = if t == 1 { g } else { momentum * b + (1.0 - dampening) * g };
                g = if nesterov { g + momentum * b } else { b };
            }
            w -= lr * g;
        }",
    ),
    (
        "lr = 1e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0.., weight_decay = 0.0 in 0.0.., amsgrad = false,",
        "pub fn adam(w: Param, g: Grad, m: State, v: State, #[when(amsgrad)] v_max: State) {
            g += weight_decay * w;
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            let v_hat = if amsgrad { v_max = max(v_max, v); v_max } else { v };
            let step_size = lr / (1.0 - beta1.powi(t));
            let denom = sqrt(v_hat) / sqrt(1.0 - beta2.powi(t)) + eps;
            w -= step_size * (m / denom);
        }",
    ),
    (
        "lr = 2e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0.., weight_decay = 0.0 in 0.0.., momentum_decay = 4e-3 in 0.0..,
        decoupled_weight_decay = false,",
        "pub fn nadam(w: Param, g: Grad, m: State, v: State, #[init(1.0)] mu_product: ScalarState) {
            if decoupled_weight_decay { w *= 1.0 - lr * weight_decay; } else { g += weight_decay * w; }
            let mu = beta1 * (1.0 - 0.5 * 0.96.powf(t * momentum_decay));
            let mu_next = beta1 * (1.0 - 0.5 * 0.96.powf((t + 1.0) * momentum_decay));
            mu_product *= mu;
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            let den = sqrt(v / (1.0 - beta2.powi(t))) + eps;
            w -= lr * (1.0 - mu) / (1.0 - mu_product) * (g / den);
            w -= lr * mu_next / (1.0 - mu_product * mu_next) * (m / den);
        }",
    ),
    (
        "lr = 1e-2 in 0.0.., alpha = 0.99 in 0.0.., eps = 1e-8 in 0.0..,
        weight_decay = 0.0 in 0.0.., momentum = 0.0 in 0.0.., centered = false,",
        "pub fn rmsprop(w: Param, g: Grad, v: State, #[when(centered)] a: State,
            #[when(momentum > 0.0)] b: State) {
            g += weight_decay * w;
            v = alpha * v + (1.0 - alpha) * g * g;
            let den = if centered { a = alpha * a + (1.0 - alpha) * g; sqrt(v - a * a) + eps }
                else { sqrt(v) + eps };
            if momentum > 0.0 { b = momentum * b + g / den; w -= lr * b; }
            else { w -= lr * (g / den); }
        }",
    ),
    (
        "k = 5 in 1.., alpha = 0.5 in 0.0..=1.0,",
        "pub fn lookahead(w: Param, #[init(w)] slow: State) {
            if t % k == 0 { slow += alpha * (w - slow); w = slow; }
        }",
    ),
    (
        "lr = 1e-3 in 0.0.., beta1 = 0.9 in 0.0..1.0, beta2 = 0.999 in 0.0..1.0,
        eps = 1e-8 in 0.0..,",
        "/// LazyAdam.
        #[sparse(lazy)]
        #[name = \"lazyadam\"]
        pub fn lazy_adam(w: Param, g: Grad, m: State, v: State) {
            m = beta1 * m + (1.0 - beta1) * g;
            v = beta2 * v + (1.0 - beta2) * g * g;
            w -= lr * sqrt(1.0 - beta2.powi(t)) / (1.0 - beta1.powi(t)) * (m / (sqrt(v) + eps));
        }",
    ),
    (
        "lr = 1e-2 in 0.0.., lr_decay = 0.0 in 0.0.., initial_accumulator_value = 0.0 in 0.0..,
        eps = 1e-10 in 0.0.., clip: f64 = 1 in -1..=1, k: i64 = -2 in -3..0,",
        "pub fn adagrad(w: Param, g: Grad, #[init(initial_accumulator_value)] s: State) {
            s += g * g;
            let clr = lr / (1.0 + (t - 1.0) * lr_decay);
            let x = min(max(g, -clip), clip) * abs(signum(g)) * exp(ln(1.0 + k * k)) ;
            w -= clr * (x / (sqrt(s) + eps));
        }",
    ),
];
