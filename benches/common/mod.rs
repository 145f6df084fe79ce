//! What the benches share.

/// A realistic operation of about `target` bytes: variables, nested selections, fragments.
pub fn operation(target: usize) -> String {
    let mut q = String::from(
        "query Dashboard($id: ID!, $limit: Int = 10) {\n  getPost(id: $id) { ...PostFields }\n",
    );
    let mut i = 0;
    while q.len() < target - 200 {
        q += &format!(
            "  p{i}: listPosts(limit: $limit) {{\n    id\n    title\n    author\n    ... on Post {{ content version }}\n    ...PostFields\n  }}\n"
        );
        i += 1;
    }
    q += "}\nfragment PostFields on Post {\n  id\n  title\n  content\n  author\n  version\n}\n";
    serde_json::json!({
        "query": q,
        "operationName": "Dashboard",
        "variables": { "id": "1", "limit": 5 },
    })
    .to_string()
}
