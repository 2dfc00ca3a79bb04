//! Scoring rules as a suite declares them (docs/design.md, section 4): which classes take part
//! in the argmax and what counts as correct. `results::scoring` judges logits by them.

use std::fmt;
use std::str::FromStr;

use crate::input::labels;

/// How a dataset's labels are read and its predictions judged, as named in a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scoring {
    /// 1000-way argmax; labels are ImageNet indices or wnids (ImageNet, V2, Sketch).
    ImageNet1k,
    /// Argmax over the 200 ImageNet-R classes.
    ImageNetR,
    /// Argmax over the 200 ImageNet-A classes.
    ImageNetA,
    /// Argmax over the 125 ImageNet classes mapped to ObjectNet, judged in ObjectNet's 113 classes;
    /// labels are ObjectNet folder names and unmapped folders are skipped.
    ObjectNet,
    /// Argmax over all of the model's classes; labels are class indices. For custom label spaces
    /// such as the demo's.
    AllClasses,
}

impl Scoring {
    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::ImageNet1k => "imagenet-1k",
            Scoring::ImageNetR => "imagenet-r",
            Scoring::ImageNetA => "imagenet-a",
            Scoring::ObjectNet => "objectnet",
            Scoring::AllClasses => "all-classes",
        }
    }

    /// Whether the model's logits must cover the 1000 ImageNet classes.
    pub fn needs_imagenet_logits(self) -> bool {
        !matches!(self, Scoring::AllClasses)
    }

    /// Images of this dataset get a border cropped before preprocessing (ObjectNet's 2 px, which
    /// removes the red frame its images carry).
    pub fn border(self) -> u32 {
        if self == Scoring::ObjectNet {
            2
        } else {
            0
        }
    }

    /// The label space a shift restricts to, for building the matching class-restricted ID view.
    pub fn restriction(self) -> Option<LabelSpace> {
        match self {
            Scoring::ImageNetR => Some(LabelSpace::Subset(labels::imagenet_r().to_vec())),
            Scoring::ImageNetA => Some(LabelSpace::Subset(labels::imagenet_a().to_vec())),
            Scoring::ObjectNet => Some(LabelSpace::Subset(labels::objectnet().restricted.clone())),
            _ => None,
        }
    }
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scoring {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "imagenet-1k" => Scoring::ImageNet1k,
            "imagenet-r" => Scoring::ImageNetR,
            "imagenet-a" => Scoring::ImageNetA,
            "objectnet" => Scoring::ObjectNet,
            "all-classes" => Scoring::AllClasses,
            other => {
                return Err(format!(
                    "unknown scoring `{other}`; expected one of imagenet-1k, imagenet-r, imagenet-a, objectnet, all-classes"
                ))
            }
        })
    }
}

/// Which logits take part in the argmax.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSpace {
    /// Every class the model has.
    All,
    /// Only these class indices (ascending).
    Subset(Vec<usize>),
}

/// What counts as a correct prediction for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The predicted class index must equal this one.
    Class(usize),
    /// The predicted ImageNet class must map to this ObjectNet class.
    ObjectNet(usize),
    /// The image has no label (an unlabelled dataset): it is predicted, never judged.
    Unlabelled,
}

impl LabelSpace {
    pub fn len(&self, num_classes: usize) -> usize {
        match self {
            LabelSpace::All => num_classes,
            LabelSpace::Subset(ids) => ids.len(),
        }
    }

    pub fn is_empty(&self, num_classes: usize) -> bool {
        self.len(num_classes) == 0
    }
}
