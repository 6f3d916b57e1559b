mod files;
mod templates;
mod manager;
