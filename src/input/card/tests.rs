use super::*;

fn card(text: &str) -> Result<ModelCard> {
    // These cards test other fields; refusing partial [preprocess] is tested through the binary.
    set_assume_imagenet_preprocessing(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), b"").unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(&file, text).unwrap();
    ModelCard::load(&file)
}

#[test]
fn full_card_and_defaults() {
    let c = card("name = \"r50\"\nonnx = \"m.onnx\"\n[preprocess]\ndefaults = \"imagenet\"\ninterpolation = \"bicubic\"\n[output]\nnum_classes = 1001\noffset = 1\n").unwrap();
    assert_eq!(c.name, "r50");
    assert_eq!(c.group, "standard");
    assert_eq!(c.preprocess.resize, 256);
    assert_eq!(c.preprocess.interpolation, Interpolation::Bicubic);
    assert_eq!((c.num_classes, c.offset, c.output_width()), (1000, 1, 1001));
}

#[test]
fn bad_fields_are_named() {
    let err = card("onnx = \"m.onnx\"\n[preprocess]\nresize = 200\ncrop = 224\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.toml:3: field `preprocess.resize`"), "{err}");
    let err = card("onnx = \"m.onnx\"\n[preprocess]\nmean = [0.5, 0.5]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.toml:3: field `preprocess.mean`"), "{err}");
    let err = card("onnx = \"missing.onnx\"\n").unwrap_err().to_string();
    assert!(err.contains("m.toml:1: field `onnx`"), "{err}");
    let err = card("onnx = \"m.onnx\"\n[preprocess]\ninterpolation = \"lanczos7\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `preprocess.interpolation`"), "{err}");
    let err = card("onnx = \"m.onnx\"\nlayers = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("m.toml:2") && err.contains("layers"), "{err}");
}

const WISE: &str = "onnx = \"m.onnx\"\ngroup = \"wise-ft\"\n[intervention]\nkind = \"wise-ft\"\nfamily = \"clip\"\nalpha = 0.3\nendpoints = [\"zs\", \"ft\"]\n";

#[test]
fn intervention_tables_are_read() {
    let c = card(WISE).unwrap();
    assert_eq!(
        c.intervention,
        Some(Intervention::WiseFt {
            family: "clip".into(),
            alpha: 0.3,
            endpoints: ["zs".into(), "ft".into()],
        })
    );
    let soup = card("onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\nmembers = [\"a\", \"b\"]\nrecipe = \"greedy\"\n").unwrap();
    let Some(Intervention::Soup {
        family,
        members,
        recipe,
    }) = soup.intervention
    else {
        panic!("{:?}", soup.intervention)
    };
    assert_eq!(
        (family.as_str(), members.len(), recipe.as_str()),
        ("m", 2, "greedy")
    );
    // The table is no input to predictions: the resume key is the same without it.
    let plain = card("onnx = \"m.onnx\"\n").unwrap();
    assert_eq!(c.setup_key(None), plain.setup_key(None));
}

#[test]
fn bad_intervention_fields_are_named() {
    let cases = [
        (WISE.replace("\"wise-ft\"\nfamily", "\"mixup\"\nfamily"), "m.toml:4: field `intervention.kind`"),
        (WISE.replace("0.3", "nan"), "m.toml:6: field `intervention.alpha`"),
        (WISE.replace("alpha = 0.3\n", ""), "field `intervention.alpha`"),
        (WISE.replace("\"clip\"", "\"../x\""), "m.toml:5: field `intervention.family`"),
        (WISE.replace("[\"zs\", \"ft\"]", "[\"zs\"]"), "m.toml:7: field `intervention.endpoints`"),
        (WISE.replace("\"ft\"]", "\"a/b\"]"), "field `intervention.endpoints`"),
        (WISE.replace("alpha = 0.3", "weight = 0.3"), "weight"),
        (
            "onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\nmembers = [\"a\"]\nrecipe = \"best\"\n".to_string(),
            "m.toml:5: field `intervention.recipe`",
        ),
        ("onnx = \"m.onnx\"\n[intervention]\nkind = \"soup\"\n".to_string(), "field `intervention.members`"),
    ];
    for (text, want) in cases {
        let err = card(&text).unwrap_err().to_string();
        assert!(err.contains(want), "{want} not in: {err}\n{text}");
    }
}
