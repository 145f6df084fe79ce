//! GraphQL over HTTP, both ways the edge reads a request: [`GraphqlRequest`], checked strictly
//! (what the pipeline analyses), and [`Parsed`], split losslessly into `query`,
//! `operationName`, `extensions.persistedQuery` and the rest kept byte for byte (what
//! persisted queries rewrite). The two agree on the rules: the last of repeated GET
//! parameters counts; a `null` member is an absent one.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::GraphqlError;

/// A GraphQL-over-HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    pub extensions: Option<Map<String, Value>>,
}

impl GraphqlRequest {
    /// A POST body: `{query, operationName, variables, extensions}`.
    pub fn from_json(body: &[u8]) -> Result<Self, GraphqlError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| GraphqlError::InvalidJson(e.to_string()))?;
        match value {
            Value::Object(map) => Self::from_object(map),
            Value::Array(_) => Err(GraphqlError::Batch),
            _ => Err(invalid("the request body must be a JSON object")),
        }
    }

    fn from_object(mut map: Map<String, Value>) -> Result<Self, GraphqlError> {
        let query = match map.remove("query") {
            Some(Value::String(q)) => q,
            Some(Value::Null) | None => return Err(invalid("the request has no `query`")),
            Some(_) => return Err(invalid("`query` must be a string")),
        };
        let operation_name = match map.remove("operationName") {
            Some(Value::String(n)) => Some(n),
            Some(Value::Null) | None => None,
            Some(_) => return Err(invalid("`operationName` must be a string")),
        };
        Ok(Self {
            query,
            operation_name,
            variables: object_or_null(map.remove("variables"), "variables")?,
            extensions: object_or_null(map.remove("extensions"), "extensions")?,
        })
    }

    /// A GET query string (without `?`): `query`, `operationName`, and `variables` and
    /// `extensions` as JSON text.
    pub fn from_query_string(qs: &str) -> Result<Self, GraphqlError> {
        let mut map = Map::new();
        for (k, v) in form_urlencoded::parse(qs.as_bytes()) {
            let value = match k.as_ref() {
                "query" | "operationName" => Value::String(v.into_owned()),
                "variables" | "extensions" if v.is_empty() => Value::Null,
                "variables" | "extensions" => serde_json::from_str(&v)
                    .map_err(|e| invalid(format!("`{k}` is not valid JSON: {e}")))?,
                _ => continue,
            };
            map.insert(k.into_owned(), value);
        }
        Self::from_object(map)
    }
}

fn invalid(msg: impl Into<String>) -> GraphqlError {
    GraphqlError::InvalidRequest(msg.into())
}

fn object_or_null(
    v: Option<Value>,
    name: &str,
) -> Result<Option<Map<String, Value>>, GraphqlError> {
    match v {
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(invalid(format!("`{name}` must be an object"))),
    }
}

/// The request as far as APQ is concerned, everything else kept to be sent on.
pub struct Parsed {
    /// `query`, when present and not empty.
    pub query: Option<String>,
    pub operation_name: Option<String>,
    /// `extensions.persistedQuery`.
    pub persisted: Value,
    pub rest: Rest,
}

/// The rest of the request, without `query` and `extensions.persistedQuery`.
pub enum Rest {
    /// Members of a JSON body, each as it came (a number in the variables keeps every digit).
    Json(BTreeMap<String, Box<RawValue>>),
    /// GET parameters other than `query` and `extensions`, and what is left of `extensions`.
    Form(Vec<(String, String)>, Map<String, Value>),
}

impl Parsed {
    /// A JSON body's members (`None`: not such a request; the strict parser says why).
    pub fn from_json(body: &[u8]) -> Option<Parsed> {
        let mut map: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
        let mut extensions: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(map.get("extensions")?.get()).ok()?;
        let persisted = serde_json::from_str(extensions.remove("persistedQuery")?.get()).ok()?;
        if extensions.is_empty() {
            map.remove("extensions");
        } else {
            let rest = serde_json::value::to_raw_value(&extensions).ok()?;
            map.insert("extensions".into(), rest);
        }
        let member = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).ok();
        let query = match map.remove("query").map(|q| member(&q)) {
            Some(Some(Value::String(q))) => Some(q).filter(|q| !q.is_empty()),
            Some(Some(Value::Null)) | None => None,
            Some(_) => return None,
        };
        let operation_name = map
            .get("operationName")
            .and_then(|n| member(n))
            .and_then(|n| n.as_str().map(str::to_string));
        Some(Parsed {
            query,
            operation_name,
            persisted,
            rest: Rest::Json(map),
        })
    }

    /// A GET query string's parameters.
    pub fn from_form(qs: &str) -> Option<Parsed> {
        let (mut query, mut operation_name, mut extensions) = (None, None, None);
        let mut params = Vec::new();
        // As in `GraphqlRequest::from_query_string`, the last of repeated parameters counts.
        for (k, v) in form_urlencoded::parse(qs.as_bytes()) {
            match k.as_ref() {
                "query" => query = Some(v.into_owned()).filter(|q| !q.is_empty()),
                "extensions" => extensions = Some(v.into_owned()),
                _ => {
                    if k == "operationName" {
                        operation_name = Some(v.to_string());
                    }
                    params.push((k.into_owned(), v.into_owned()));
                }
            }
        }
        let Value::Object(mut extensions) = serde_json::from_str(&extensions?).ok()? else {
            return None;
        };
        let persisted = extensions.remove("persistedQuery")?;
        Some(Parsed {
            query,
            operation_name,
            persisted,
            rest: Rest::Form(params, extensions),
        })
    }
}
