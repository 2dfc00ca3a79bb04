use super::*;

fn manifest(text: &str) -> (tempfile::TempDir, Result<Manifest>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.csv");
    std::fs::write(&file, text).unwrap();
    let m = Manifest::load(&file);
    (dir, m)
}

#[test]
fn labels_by_index_or_wnid_and_extra_columns() {
    let (_d, m) = manifest("label,path,note\n0,a.jpg,x\nn15075141,b.jpg,y\n");
    let m = m.unwrap();
    let t = m.targets(Scoring::ImageNet1k).unwrap();
    assert_eq!(t, vec![Some(Target::Class(0)), Some(Target::Class(999))]);
}

#[test]
fn bad_rows_name_line_and_field() {
    let (_d, m) = manifest("path,label\na.jpg,0\nb.jpg,n99999999\n");
    let err = m
        .unwrap()
        .targets(Scoring::ImageNet1k)
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.csv:3: field `label`"), "{err}");
    let (_d, m) = manifest("path,label\na.jpg,0\n,3\n");
    assert!(m.unwrap_err().to_string().contains("m.csv:3: field `path`"));
    let (_d, m) = manifest("file,label\na.jpg,0\n");
    assert!(m.unwrap_err().to_string().contains("m.csv:1: field `path`"));
    let (_d, m) = manifest("path,label\na.jpg,0\nb.jpg,1,extra\n");
    assert!(m.unwrap_err().to_string().contains("m.csv:3"));
}

#[test]
fn r_labels_outside_the_200_are_rejected_and_objectnet_unmapped_skipped() {
    let (_d, m) = manifest("path,label\na.jpg,n01440764\n");
    let err = m
        .unwrap()
        .targets(Scoring::ImageNetR)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not one of the 200 imagenet-r classes"),
        "{err}"
    );
    let (_d, m) = manifest("path,label\na.png,alarm_clock\nb.png,squeegee\n");
    let t = m.unwrap().targets(Scoring::ObjectNet).unwrap();
    assert_eq!(t, vec![Some(Target::ObjectNet(0)), None]);
}

#[test]
fn flat_imagenet_val_with_loc_val_solution() {
    let dir = tempfile::tempdir().unwrap();
    let val = dir.path().join("val");
    std::fs::create_dir(&val).unwrap();
    for f in [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000002.JPEG",
    ] {
        std::fs::write(val.join(f), b"").unwrap();
    }
    let gt = dir.path().join("LOC_val_solution.csv");
    std::fs::write(&gt, "ImageId,PredictionString\nILSVRC2012_val_00000002,n15075141 1 2 3 4\nILSVRC2012_val_00000001,n01440764 5 6 7 8 n01440764 1 1 1 1\n").unwrap();
    let scanned = scan(Layout::Imagenet, &val, Some(&gt)).unwrap();
    assert_eq!(scanned.form, Some(GroundTruthForm::Csv));
    let labels: Vec<&str> = scanned.rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(labels, ["n01440764", "n15075141"]);
    std::fs::write(
        &gt,
        "ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 2 3 4\n",
    )
    .unwrap();
    let err = scan(Layout::Imagenet, &val, Some(&gt))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no label for image") && err.contains("00000002"),
        "{err}"
    );
}

#[test]
fn v2_folders_are_parsed_as_integers() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["2", "10", "100"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        std::fs::write(dir.path().join(class).join("x.jpeg"), b"").unwrap();
    }
    let rows = scan(Layout::ImagenetV2, dir.path(), None).unwrap().rows;
    let labels: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(labels, ["2", "10", "100"]);
}

#[test]
fn devkit_table_is_the_1000_classes_in_id_order() {
    let mut ids = DEVKIT_ID_WNID
        .lines()
        .skip(1)
        .map(|l| l.split('\t').next().unwrap());
    assert!(ids.by_ref().zip(1..).all(|(id, n)| id == n.to_string()));
    let wnids = devkit_wnids();
    assert_eq!(wnids.len(), 1000);
    assert_eq!(&wnids[..3], ["n02119789", "n02100735", "n02110185"]);
    // ILSVRC2012_val_00000001 has ID 490, the sea snake.
    assert_eq!(wnids[489], "n01751748");
    let mut sorted = wnids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, labels::imagenet().wnids);
}

#[test]
fn devkit_form_is_detected_by_content_and_bad_ids_name_the_line() {
    assert!(is_devkit_form(Path::new("gt.txt"), "490\n361\n"));
    assert!(!is_devkit_form(
        Path::new("gt.csv"),
        "ImageId,PredictionString\n"
    ));
    let gt = Path::new("gt.txt");
    let labels = devkit_labels(gt, "490\n1\n").unwrap();
    assert_eq!(labels["ILSVRC2012_val_00000002"], "n02119789");
    for bad in ["490\n1001\n", "490\n0\n", "490\nn01440764\n", "490\n\n"] {
        let err = devkit_labels(gt, bad).unwrap_err().to_string();
        assert!(err.contains("gt.txt:2: field `ILSVRC2012_ID`"), "{err}");
    }
}
