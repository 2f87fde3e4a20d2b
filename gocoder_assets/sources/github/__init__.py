"""The GitHub source: REST search for the repository list, GraphQL for PRs and issues, git for code."""
