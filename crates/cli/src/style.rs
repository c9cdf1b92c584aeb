//! Terminal styling for human output: colour only when it helps and is wanted.

use std::io::IsTerminal;

use rescue_disk::cli::ColorChoice;

/// Decides whether to emit ANSI colour and wraps text accordingly.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// `auto` colours only a terminal, and never when NO_COLOR is set to a
    /// non-empty value (https://no-color.org).
    pub fn for_stdout(choice: ColorChoice) -> Self {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stdout().is_terminal()
            }
        };
        Style { color }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Section headings.
    pub fn heading(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Problems that explain a failed boot or login.
    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Likely trouble.
    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }

    /// Healthy state.
    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    /// De-emphasised detail.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}
