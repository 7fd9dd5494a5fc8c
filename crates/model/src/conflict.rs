//! Conflict-copy names, as the seeds spell them: `name_COMPUTER_YYYYMMDD_Conflict.ext`, with a
//! counter (`..._Conflict_2.ext`) when that name is taken.

use crate::timespec::civil_date;

/// The name of the `n`-th conflict copy (n = 1 is the plain name) of `name`, made on `computer`
/// at `unix_secs`. The extension is the part after the last dot, unless the dot leads the name.
pub fn conflict_name(name: &str, computer: &str, unix_secs: i64, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    };
    let (y, m, d) = civil_date(unix_secs);
    let computer: String = computer
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    let counter = if n > 1 {
        format!("_{n}")
    } else {
        String::new()
    };
    let mut out = format!("{stem}_{computer}_{y:04}{m:02}{d:02}_Conflict{counter}");
    if let Some(ext) = ext {
        out.push('.');
        out.push_str(ext);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_seeds() {
        // 2026-11-22 00:00:00 UTC
        let t = 1_795_305_600;
        assert_eq!(
            conflict_name("report.docx", "laptop", t, 1),
            "report_laptop_20261122_Conflict.docx"
        );
        assert_eq!(
            conflict_name("report.docx", "laptop", t, 3),
            "report_laptop_20261122_Conflict_3.docx"
        );
        assert_eq!(
            conflict_name("Makefile", "pc", t, 1),
            "Makefile_pc_20261122_Conflict"
        );
        assert_eq!(
            conflict_name(".bashrc", "pc", t, 1),
            ".bashrc_pc_20261122_Conflict"
        );
    }
}
