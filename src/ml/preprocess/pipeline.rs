//! [`Pipeline`]: numeric transformers applied in order, fitted in order (each on the output of
//! the previous), serialisable as a whole.

use serde::{Deserialize, Serialize};

use super::{
    KBinsDiscretizer, MinMaxScaler, PolynomialFeatures, RobustScaler, SimpleImputer,
    StandardScaler, Transformer,
};
use crate::ml::error::Result;
use crate::ml::tensor::Tensor;

/// One step of a pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// A [`SimpleImputer`].
    Impute(SimpleImputer),
    /// A [`StandardScaler`].
    Standard(StandardScaler),
    /// A [`MinMaxScaler`].
    MinMax(MinMaxScaler),
    /// A [`RobustScaler`].
    Robust(RobustScaler),
    /// A [`PolynomialFeatures`].
    Poly(PolynomialFeatures),
    /// A [`KBinsDiscretizer`].
    KBins(KBinsDiscretizer),
}

impl Step {
    fn get(&self) -> &dyn Transformer {
        match self {
            Step::Impute(t) => t,
            Step::Standard(t) => t,
            Step::MinMax(t) => t,
            Step::Robust(t) => t,
            Step::Poly(t) => t,
            Step::KBins(t) => t,
        }
    }

    fn get_mut(&mut self) -> &mut dyn Transformer {
        match self {
            Step::Impute(t) => t,
            Step::Standard(t) => t,
            Step::MinMax(t) => t,
            Step::Robust(t) => t,
            Step::Poly(t) => t,
            Step::KBins(t) => t,
        }
    }
}

/// Transformers in sequence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Pipeline {
    /// A pipeline of `steps`.
    pub fn new(steps: Vec<Step>) -> Self {
        Pipeline { steps }
    }
}

impl Transformer for Pipeline {
    fn fit(&mut self, x: &Tensor<f64>) -> Result<()> {
        self.fit_transform(x).map(drop)
    }

    fn transform(&self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let mut cur = x.clone();
        for s in &self.steps {
            cur = s.get().transform(&cur)?;
        }
        Ok(cur)
    }

    fn fit_transform(&mut self, x: &Tensor<f64>) -> Result<Tensor<f64>> {
        let mut cur = x.clone();
        for s in &mut self.steps {
            cur = s.get_mut().fit_transform(&cur)?;
        }
        Ok(cur)
    }
}
