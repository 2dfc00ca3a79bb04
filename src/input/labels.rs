//! Label spaces shipped with the tool: ImageNet-1k classes, the 200-class ImageNet-R and ImageNet-A
//! subsets and the ObjectNet ↔ ImageNet mapping. The data files live in `assets/labels/` (see
//! SOURCES.md there) and are compiled in, so no run depends on files outside the binary.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const IMAGENET_TSV: &str = include_str!("../../assets/labels/imagenet1k_index_wnid_name.tsv");
const IMAGENET_R_INDICES: &str = include_str!("../../assets/labels/imagenet_r_indices.txt");
const IMAGENET_A_INDICES: &str = include_str!("../../assets/labels/imagenet_a_indices.txt");
const OBJECTNET_TSV: &str = include_str!("../../assets/labels/objectnet_113_to_imagenet.tsv");
const OBJECTNET_FOLDERS_JSON: &str =
    include_str!("../../assets/labels/folder_to_objectnet_label.json");

pub const IMAGENET_CLASSES: usize = 1000;

/// The 1000 ImageNet classes in index order (sorted wnids).
pub struct ImageNet {
    pub wnids: Vec<String>,
    pub names: Vec<String>,
    by_wnid: HashMap<String, usize>,
}

impl ImageNet {
    /// Class index of a wnid such as `n01440764`.
    pub fn index_of(&self, wnid: &str) -> Option<usize> {
        self.by_wnid.get(wnid).copied()
    }
}

/// The 113 ObjectNet classes that overlap ImageNet, and which ImageNet classes each one covers.
pub struct ObjectNet {
    /// Folder names of the mapped classes, sorted; the position is the ObjectNet class index.
    pub folders: Vec<String>,
    /// For each ObjectNet class, the ImageNet indices that count as that class.
    pub imagenet_indices: Vec<Vec<usize>>,
    /// The 125 ImageNet indices the logits are restricted to, ascending.
    pub restricted: Vec<usize>,
    /// ImageNet index → ObjectNet class, for the 125 mapped ImageNet classes.
    pub objectnet_of_imagenet: HashMap<usize, usize>,
    by_folder: HashMap<String, usize>,
    /// All 313 ObjectNet folder names, mapped or not.
    all_folders: HashSet<String>,
}

impl ObjectNet {
    /// ObjectNet class index of a folder, or `None` for the 200 folders with no ImageNet counterpart.
    pub fn class_of_folder(&self, folder: &str) -> Option<usize> {
        self.by_folder.get(folder).copied()
    }

    /// Whether the folder is one of ObjectNet's 313 classes at all.
    pub fn is_known_folder(&self, folder: &str) -> bool {
        self.all_folders.contains(folder)
    }
}

pub fn imagenet() -> &'static ImageNet {
    static CELL: OnceLock<ImageNet> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut wnids = Vec::with_capacity(IMAGENET_CLASSES);
        let mut names = Vec::with_capacity(IMAGENET_CLASSES);
        for line in IMAGENET_TSV.lines().skip(1).filter(|l| !l.is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            wnids.push(cols[1].to_string());
            names.push(cols[2].to_string());
        }
        let by_wnid = wnids
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        ImageNet {
            wnids,
            names,
            by_wnid,
        }
    })
}

fn parse_indices(text: &str) -> Vec<usize> {
    text.split_whitespace()
        .map(|t| t.parse().expect("shipped index list is numeric"))
        .collect()
}

/// ImageNet indices of the 200 ImageNet-R classes, ascending.
pub fn imagenet_r() -> &'static [usize] {
    static CELL: OnceLock<Vec<usize>> = OnceLock::new();
    CELL.get_or_init(|| parse_indices(IMAGENET_R_INDICES))
}

/// ImageNet indices of the 200 ImageNet-A classes, ascending.
pub fn imagenet_a() -> &'static [usize] {
    static CELL: OnceLock<Vec<usize>> = OnceLock::new();
    CELL.get_or_init(|| parse_indices(IMAGENET_A_INDICES))
}

pub fn objectnet() -> &'static ObjectNet {
    static CELL: OnceLock<ObjectNet> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut rows: Vec<(String, Vec<usize>)> = OBJECTNET_TSV
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|line| {
                let cols: Vec<&str> = line.split('\t').collect();
                let indices = cols[3]
                    .split(';')
                    .map(|t| t.parse().expect("shipped index is numeric"))
                    .collect();
                (cols[1].to_string(), indices)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let folders: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let imagenet_indices: Vec<Vec<usize>> = rows.into_iter().map(|r| r.1).collect();
        let mut objectnet_of_imagenet = HashMap::new();
        for (class, indices) in imagenet_indices.iter().enumerate() {
            for &i in indices {
                objectnet_of_imagenet.insert(i, class);
            }
        }
        let mut restricted: Vec<usize> = objectnet_of_imagenet.keys().copied().collect();
        restricted.sort_unstable();
        let by_folder = folders
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        let all: HashMap<String, String> = serde_json::from_str(OBJECTNET_FOLDERS_JSON)
            .expect("shipped ObjectNet folder list is valid JSON");
        ObjectNet {
            folders,
            imagenet_indices,
            restricted,
            objectnet_of_imagenet,
            by_folder,
            all_folders: all.into_keys().collect(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const R_WNIDS: &str = include_str!("../../assets/labels/imagenet_r_wnids.txt");
    const A_WNIDS: &str = include_str!("../../assets/labels/imagenet_a_synsets.txt");

    #[test]
    fn imagenet_has_1000_sorted_unique_wnids() {
        let inet = imagenet();
        assert_eq!(inet.wnids.len(), 1000);
        assert!(
            inet.wnids.windows(2).all(|w| w[0] < w[1]),
            "index order is sorted wnid order"
        );
        assert_eq!(inet.index_of("n01440764"), Some(0));
        assert_eq!(inet.index_of("n15075141"), Some(999));
    }

    #[test]
    fn subsets_agree_with_their_wnid_lists() {
        let inet = imagenet();
        for (indices, wnids) in [(imagenet_r(), R_WNIDS), (imagenet_a(), A_WNIDS)] {
            let wnids: Vec<&str> = wnids.split_whitespace().collect();
            assert_eq!(indices.len(), 200);
            assert_eq!(wnids.len(), 200);
            for (i, w) in indices.iter().zip(wnids) {
                assert_eq!(inet.wnids[*i], w);
            }
        }
    }

    #[test]
    fn objectnet_maps_113_classes_to_125_imagenet_classes() {
        let on = objectnet();
        assert_eq!(on.folders.len(), 113);
        assert_eq!(on.restricted.len(), 125);
        assert_eq!(on.all_folders.len(), 313);
        assert_eq!(on.class_of_folder("alarm_clock"), Some(0));
        assert_eq!(on.imagenet_indices[0], vec![409, 530]);
        assert!(on.is_known_folder("squeegee") && on.class_of_folder("squeegee").is_none());
    }
}
