//! A request's query parameters, checked: what is wrong with them is a value that says
//! which HTTP status to answer and why, in one line.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;

use crate::kernel::Frame;
use crate::render::{Fault, Tile};

/// A render request: the tile, and how long the client is willing to wait for it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub tile: Tile,
    /// `timeout_ms`: the job is cancelled if it has not ended by then.
    pub timeout: Option<Duration>,
}

/// Why a request's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A required parameter is absent.
    Missing(&'static str),
    /// A parameter is not a positive integer.
    NotANumber { name: &'static str, value: String },
    /// A parameter is 0.
    Zero(&'static str),
    /// `fault` names no known fault.
    UnknownFault(String),
    /// The image has more pixels than the server's limit.
    TooLarge { pixels: u64, limit: u64 },
}

impl ParamError {
    /// The HTTP status to answer: 413 for an image over the limit, 400 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            ParamError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Missing(name) => write!(f, "missing parameter {name}"),
            ParamError::NotANumber { name, value } => {
                write!(f, "parameter {name}={value:?} is not a positive integer")
            }
            ParamError::Zero(name) => write!(f, "parameter {name} must be at least 1"),
            ParamError::UnknownFault(v) => {
                write!(f, "parameter fault={v:?}: expected panic or abort")
            }
            ParamError::TooLarge { pixels, limit } => write!(
                f,
                "image of {pixels} pixels is over this server's limit of {limit} pixels"
            ),
        }
    }
}

impl std::error::Error for ParamError {}

/// Reads `width`, `height`, `max_iter` (required, at least 1), `timeout_ms` and `fault`
/// (optional) from the query, refusing images over `max_pixels`.
///
/// # Errors
/// The first thing wrong, in that order.
pub fn parse(query: &HashMap<String, String>, max_pixels: u64) -> Result<Request, ParamError> {
    let width = required(query, "width")?;
    let height = required(query, "height")?;
    let max_iter = required(query, "max_iter")?;
    let timeout = optional(query, "timeout_ms")?.map(|ms| Duration::from_millis(ms.into()));
    let fault = match query.get("fault").map(String::as_str) {
        None => None,
        Some("panic") => Some(Fault::Panic),
        Some("abort") => Some(Fault::Abort),
        Some(other) => return Err(ParamError::UnknownFault(other.to_string())),
    };
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ParamError::TooLarge {
            pixels,
            limit: max_pixels,
        });
    }
    Ok(Request {
        tile: Tile {
            frame: Frame {
                width,
                height,
                max_iter,
            },
            fault,
        },
        timeout,
    })
}

fn required(query: &HashMap<String, String>, name: &'static str) -> Result<u32, ParamError> {
    optional(query, name)?.ok_or(ParamError::Missing(name))
}

fn optional(
    query: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<u32>, ParamError> {
    let Some(value) = query.get(name) else {
        return Ok(None);
    };
    let n: u32 = value.trim().parse().map_err(|_| ParamError::NotANumber {
        name,
        value: value.clone(),
    })?;
    if n == 0 {
        return Err(ParamError::Zero(name));
    }
    Ok(Some(n))
}
