//! Escaping of names that come from data (model, group and dataset names) before they go into
//! HTML, SVG, XML (JUnit) or Markdown output. One place, so every writer escapes the same way.

/// Text or attribute value for HTML, SVG and XML: `&`, `<`, `>`, `"` and `'` as entities.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One Markdown table cell: the characters that would end the cell, start markup or inline HTML
/// are backslash-escaped or made entities; line breaks become spaces.
pub fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A table as the reports render it: the header, then the rows, every cell already text.
pub type Table = (Vec<String>, Vec<Vec<String>>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_become_entities() {
        assert_eq!(
            escape_xml(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn markdown_cells_cannot_be_broken_out_of() {
        assert_eq!(escape_markdown("a|b\n<img>"), r"a\|b &lt;img&gt;");
        assert_eq!(escape_markdown("[x](javascript:y)"), r"\[x\](javascript:y)");
    }
}
